//! tokio-postgres for tests: a runtime per test, clients whose every step is bounded (a
//! hang fails the test instead of blocking it), and small query helpers.
//!
//! Two styles, both used: [`pg_connect`] + [`sq`]/[`sq1`] (a plain `Client`, notices on a
//! channel), and [`Pg`] (a client with its connection task, for tests that watch how a
//! connection ends, and for the admin console's result sets).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::Cluster;
use super::console::{Rows, rows_of};

/// Bound on every single step of a [`Pg`] (connect, query, connection end) and on a
/// state a test waits for.
pub const STEP: Duration = Duration::from_secs(20);
/// Pause between two looks at a state a test waits for.
pub const POLL: Duration = Duration::from_millis(50);

/// A fresh multi-thread tokio runtime (two workers).
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `fut` on a fresh runtime; panics if it takes longer than `secs` (so a hang
/// fails the test instead of blocking it).
pub fn run_async<F: Future>(secs: u64, fut: F) -> F::Output {
    rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .unwrap_or_else(|_| panic!("test body timed out after {secs} s"))
    })
}

/// `fut`'s output; panics naming `what` if it takes longer than [`STEP`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {STEP:?}"),
    }
}

/// The SQLSTATE of an error, if it carries one.
pub fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// The SQLSTATE of an error, or a "no SQLSTATE" text that matches none.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    code(e).unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

// ------------------------------------------------------------------ plain clients

/// tokio-postgres connection (NoTls, 10 s connect timeout) to `url` (a URL
/// or key=value string). The connection is driven by a spawned task that
/// forwards its async messages (notices, notifications) to the receiver.
pub async fn pg_connect(
    url: &str,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let config: tokio_postgres::Config = url.parse().expect("connection string");
    pg_connect_config(&config).await
}

/// [`pg_connect`] with a built [`tokio_postgres::Config`].
pub async fn pg_connect_config(
    config: &tokio_postgres::Config,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
) {
    let (client, mut conn) = tokio::time::timeout(Duration::from_secs(10), config.connect(NoTls))
        .await
        .unwrap_or_else(|_| panic!("connect {config:?}: timed out"))
        .unwrap_or_else(|e| panic!("connect {config:?}: {e}"));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            let _ = tx.send(msg);
        }
    });
    (client, rx)
}

/// Like [`pg_connect`] (30 s connect timeout, async messages dropped), but an error is
/// returned instead of a panic: for spawned tasks whose errors are collected.
pub async fn try_pg_connect(url: &str) -> Result<Client, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    let (client, mut conn) = tokio::time::timeout(Duration::from_secs(30), config.connect(NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        while let Some(Ok(_)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {}
    });
    Ok(client)
}

/// Superuser connection straight to the primary, database app (for setup and checks).
pub async fn superuser(c: &Cluster) -> Client {
    pg_connect(&c.node_url("primary", "postgres", "", "app"))
        .await
        .0
}

/// The server process serving `client` now (`pg_backend_pid()`).
pub async fn backend_pid(client: &Client) -> i32 {
    sq1(client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .expect("pid")
}

/// First column of every row of a simple query, as text (NULL → "").
pub async fn sq(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_string()),
            _ => None,
        })
        .collect()
}

/// The single value a simple query returns.
pub async fn sq1(client: &Client, sql: &str) -> String {
    let rows = sq(client, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: rows {rows:?}");
    rows.into_iter().next().unwrap()
}

/// Joins spawned tasks; panics with the first errors if any failed.
pub async fn join_all<T>(what: &str, handles: Vec<JoinHandle<Result<T, String>>>) -> Vec<T> {
    let mut errors = Vec::new();
    let mut oks = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(v)) => oks.push(v),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("task panicked: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "{what}: {} of {} tasks failed; first errors:\n{}",
        errors.len(),
        errors.len() + oks.len(),
        errors
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    oks
}

/// Opens `n` clients to pgsluice, each in a transaction (so each holds its own
/// server connection: the pool has at most `n`), and runs `sql` (simple
/// query, first column) on each. Returns (server pid, rows) per server.
pub async fn on_every_server(url: &str, n: usize, sql: &str) -> Vec<(String, Vec<String>)> {
    let mut held = Vec::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let (c, _) = pg_connect(url).await;
        sq(&c, "BEGIN").await;
        let pid = sq1(&c, "SELECT pg_backend_pid()").await;
        let rows = sq(&c, sql).await;
        out.push((pid, rows));
        held.push(c);
    }
    for c in &held {
        sq(c, "COMMIT").await;
    }
    let pids: std::collections::HashSet<&String> = out.iter().map(|(p, _)| p).collect();
    assert_eq!(
        pids.len(),
        n,
        "{n} clients in transactions should hold {n} different servers: {out:?}"
    );
    out
}

/// First column of the first row of a simple query's messages ("" for NULL).
pub fn first(rows: &[SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .expect("a row")
}

// ------------------------------------------------------------------ Pg

/// A tokio-postgres client and its connection task; every step is bounded by [`STEP`].
pub struct Pg {
    pub client: Client,
    pub conn: JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Pg {
    pub async fn try_connect(url: &str) -> Result<Pg, tokio_postgres::Error> {
        let (client, conn) = within(
            &format!("connect {url}"),
            tokio_postgres::connect(url, NoTls),
        )
        .await?;
        Ok(Pg {
            client,
            conn: tokio::spawn(conn),
        })
    }

    pub async fn connect(url: &str) -> Pg {
        Pg::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
    }

    pub async fn try_q(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        within(sql, self.client.simple_query(sql)).await
    }

    pub async fn q(&self, sql: &str) -> Vec<SimpleQueryMessage> {
        self.try_q(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// First column of the first row ("" for NULL).
    pub async fn one(&self, sql: &str) -> String {
        first(&self.q(sql).await)
    }

    /// The SQLSTATE a statement fails with.
    pub async fn fails(&self, sql: &str) -> String {
        match self.try_q(sql).await {
            Ok(r) => panic!("{sql} succeeded: {r:?}"),
            Err(e) => code(&e).unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e:?}")),
        }
    }

    /// A console command's result set.
    pub async fn show(&self, sql: &str) -> Rows {
        rows_of(self.q(sql).await)
    }

    /// Runs console command `sql` until its result satisfies `settled` or [`STEP`] passes;
    /// the last result either way (the caller asserts on it). Client and server states
    /// are a snapshot: a client that has its answer may still be giving its server back
    /// for a moment, so a test waits for a state instead of reading it once.
    pub async fn show_until(&self, sql: &str, settled: impl Fn(&Rows) -> bool) -> Rows {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let rows = self.show(sql).await;
            if settled(&rows) || tokio::time::Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (≤ [`STEP`]) for the connection to end by itself; the SQLSTATE it ended
    /// with, if any.
    pub async fn wait_closed(self, what: &str) -> Option<String> {
        let Pg { client, conn } = self;
        let r = within(what, conn).await.expect("connection task");
        drop(client);
        r.err().and_then(|e| code(&e))
    }

    /// Closes politely (Terminate) and waits for the connection task.
    pub async fn close(self) {
        let Pg { client, conn } = self;
        drop(client);
        let _ = within("closing a client", conn).await;
    }

    /// Drops the socket without a Terminate message, like a crashed client.
    pub async fn kill(self) {
        let Pg { client, conn } = self;
        conn.abort();
        let _ = conn.await;
        drop(client);
    }
}
