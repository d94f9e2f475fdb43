//! The admin console (databases `pgsluice` and `pgbouncer`), the HTTP endpoints
//! (`/metrics`, `/healthz`, `/readyz`) and the slow query log (issue 5).
//!
//! Every test runs its own PostgreSQL cluster and pgsluice. Values are checked against
//! what the test itself did (clients it connected, queries it ran), never against times.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Cluster, Pooler, free_port, psql, psql_ok, wait_until};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Bound on every single step (connect, query, connection end, a state to settle).
const STEP: Duration = Duration::from_secs(20);
/// Pause between two looks at a state that is waited for.
const POLL: Duration = Duration::from_millis(50);

// ------------------------------------------------------------------ helpers

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {STEP:?}"),
    }
}

/// The cluster's usual config (transaction mode unless `mode` says otherwise) with admin
/// user `admin`/`admin_pw`, stats user `watcher`/`watcher_pw`, and `extra` appended.
fn config(c: &Cluster, mode: &str, pool_size: u32, extra: &str) -> String {
    let base = c.pooler_config(mode, "scram-sha-256", pool_size);
    let base = base.replacen(
        "[auth]\ntype = \"scram-sha-256\"\n",
        "[auth]\ntype = \"scram-sha-256\"\nadmin_users = [\"admin\"]\nstats_users = [\"watcher\"]\n",
        1,
    );
    format!(
        "{base}\n[[users]]\nname = \"admin\"\npassword = \"admin_pw\"\n\n\
         [[users]]\nname = \"watcher\"\npassword = \"watcher_pw\"\n\n{extra}\n"
    )
}

/// `[admin]` with the HTTP endpoints on a free port; returns (section, port).
fn http_section() -> (String, u16) {
    let port = free_port();
    (
        format!("[admin]\nhttp_listen_addr = \"127.0.0.1:{port}\"\n"),
        port,
    )
}

fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

struct Pg {
    client: Client,
    conn: JoinHandle<Result<(), tokio_postgres::Error>>,
}

async fn try_connect(url: &str) -> Result<Pg, tokio_postgres::Error> {
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

async fn connect(url: &str) -> Pg {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

/// A result set: column names and rows of (column → value).
#[derive(Debug)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<HashMap<String, Option<String>>>,
}

impl Rows {
    /// The rows whose `col` equals `val`.
    fn with(&self, col: &str, val: &str) -> Vec<&HashMap<String, Option<String>>> {
        self.rows
            .iter()
            .filter(|r| r.get(col).and_then(|v| v.as_deref()) == Some(val))
            .collect()
    }

    /// `col` of the single row whose `key` column equals `val`, as a number.
    fn num(&self, key: &str, val: &str, col: &str) -> i64 {
        let rows = self.with(key, val);
        assert_eq!(rows.len(), 1, "one row with {key} = {val} in {self:#?}");
        rows[0]
            .get(col)
            .unwrap_or_else(|| panic!("no column {col} in {self:#?}"))
            .as_deref()
            .unwrap_or_else(|| panic!("{col} is NULL in {self:#?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{col}: {e} in {self:#?}"))
    }
}

impl Pg {
    async fn try_q(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        within(sql, self.client.simple_query(sql)).await
    }

    async fn q(&self, sql: &str) -> Vec<SimpleQueryMessage> {
        self.try_q(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    async fn one(&self, sql: &str) -> String {
        rows_of(self.q(sql).await).rows[0]
            .values()
            .next()
            .cloned()
            .flatten()
            .unwrap_or_default()
    }

    /// A console command's result set.
    async fn show(&self, sql: &str) -> Rows {
        rows_of(self.q(sql).await)
    }

    /// Runs console command `sql` until its result satisfies `settled` or [`STEP`] passes;
    /// the last result either way (the caller asserts on it). Client and server states
    /// are a snapshot: a client that has its answer may still be giving its server back
    /// for a moment, so a test waits for a state instead of reading it once.
    async fn show_until(&self, sql: &str, settled: impl Fn(&Rows) -> bool) -> Rows {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let rows = self.show(sql).await;
            if settled(&rows) || tokio::time::Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The SQLSTATE a statement fails with.
    async fn fails(&self, sql: &str) -> String {
        match self.try_q(sql).await {
            Ok(r) => panic!("{sql} succeeded: {r:?}"),
            Err(e) => code(&e).unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e:?}")),
        }
    }

    /// Waits for the connection to end by itself; the SQLSTATE it ended with, if any.
    async fn wait_closed(self, what: &str) -> Option<String> {
        let Pg { client, conn } = self;
        let r = within(what, conn).await.expect("connection task");
        drop(client);
        r.err().and_then(|e| code(&e))
    }
}

fn rows_of(msgs: Vec<SimpleQueryMessage>) -> Rows {
    let mut out = Rows {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                out.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                let row = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).map(str::to_string)))
                    .collect();
                out.rows.push(row);
            }
            _ => {}
        }
    }
    out
}

/// One HTTP/1.1 GET on 127.0.0.1:`port`: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(STEP)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// One sample of a scrape: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses a scrape with Python's `prometheus_client` (the reference text parser).
fn parse_prometheus(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = "\x1f".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(s.name, labels, repr(float(s.value)), sep="\t")
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (pip install prometheus_client):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap_or_default().to_string();
            let labels = f
                .next()
                .unwrap_or_default()
                .split('\x1f')
                .filter(|s| !s.is_empty())
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let value = f.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// Scrapes `/metrics` on `port` until `settled` holds for a scrape or [`STEP`] passes; the
/// last scrape either way (the caller asserts on it). Counters are final once a client
/// has its answer; state gauges may lag it by a moment (see [`Pg::show_until`]).
fn scrape_until(port: u16, settled: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let (status, body) = http_get(port, "/metrics");
        assert_eq!(status, 200, "{body}");
        let samples = parse_prometheus(&body);
        if settled(&samples) || std::time::Instant::now() >= deadline {
            return samples;
        }
        std::thread::sleep(POLL);
    }
}

/// Like [`metric`], but `None` unless exactly one sample matches.
fn metric_opt(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples.iter().filter(|s| s.name == name).filter(|s| {
        want.iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    });
    match (found.next(), found.next()) {
        (Some(s), None) => Some(s.value),
        _ => None,
    }
}

/// The value of `name` whose labels include all of `want`.
fn metric(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0].value
}

const POOLS_COLUMNS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
];

const SOCKET_COLUMNS: &[&str] = &[
    "type",
    "user",
    "database",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
];

const STATS_COLUMNS: &[&str] = &[
    "database",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
];

const DATABASES_COLUMNS: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
];

/// PgBouncer's columns come first, in PgBouncer's order.
fn assert_starts_with(rows: &Rows, expected: &[&str], what: &str) {
    assert!(
        rows.columns.len() >= expected.len() && rows.columns[..expected.len()] == *expected,
        "{what}: columns {:?}, PgBouncer's are {expected:?}",
        rows.columns
    );
}

// ------------------------------------------------------------------ console

#[test]
fn show_commands_report_live_pools_clients_servers_and_stats() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 3, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let before = admin.show("SHOW STATS").await;
        assert_starts_with(&before, STATS_COLUMNS, "SHOW STATS");
        assert_eq!(before.num("database", "app", "total_query_count"), 0);

        // one client inside a transaction (holds a server), one idle between queries
        let busy = connect(&app).await;
        busy.q("BEGIN").await;
        busy.q("SELECT 1").await;
        let idle = connect(&app).await;
        for _ in 0..10 {
            assert_eq!(idle.one("SELECT 2").await, "2");
        }

        // `idle` has its last answer; it gives its server back a moment later.
        let pools = admin
            .show_until("SHOW POOLS;", |p| {
                let Some(row) = p.with("database", "app").first().copied() else {
                    return false;
                };
                let n = |c: &str| row.get(c).cloned().flatten().and_then(|v| v.parse().ok());
                n("cl_active") == Some(2)
                    && n("cl_waiting") == Some(0)
                    && n("sv_active") == Some(1)
                    && n("sv_idle").is_some_and(|i: i64| i >= 1)
            })
            .await;
        assert_starts_with(&pools, POOLS_COLUMNS, "SHOW POOLS");
        let row = &pools.with("database", "app")[0];
        let n = |c: &str| row[c].as_deref().unwrap_or("").parse::<i64>().unwrap();
        assert_eq!(n("cl_active"), 2, "{pools:#?}");
        assert_eq!(n("cl_waiting"), 0, "{pools:#?}");
        assert_eq!(n("sv_active"), 1, "{pools:#?}");
        assert!(n("sv_idle") >= 1, "{pools:#?}");
        assert_eq!(row["pool_mode"].as_deref(), Some("transaction"));

        let clients = admin.show("show clients").await;
        assert_starts_with(&clients, SOCKET_COLUMNS, "SHOW CLIENTS");
        let app_clients = clients.with("database", "app");
        assert_eq!(app_clients.len(), 2, "{clients:#?}");
        let states: Vec<_> = app_clients
            .iter()
            .map(|r| r["state"].clone().unwrap_or_default())
            .collect();
        assert!(states.contains(&"active".to_string()), "{states:?}");
        assert!(states.contains(&"idle".to_string()), "{states:?}");
        assert_eq!(
            clients.with("database", "pgsluice").len(),
            1,
            "the console itself"
        );
        let linked = clients
            .with("state", "active")
            .into_iter()
            .find(|r| r["database"].as_deref() == Some("app"))
            .and_then(|r| r["link"].clone())
            .unwrap_or_default();
        assert!(linked.starts_with('s'), "active client's link {linked:?}");

        let servers = admin.show("SHOW SERVERS").await;
        assert_starts_with(&servers, SOCKET_COLUMNS, "SHOW SERVERS");
        let active = servers.with("state", "active");
        assert_eq!(active.len(), 1, "{servers:#?}");
        assert_eq!(active[0]["ptr"].as_deref(), Some(linked.as_str()));
        let pid = active[0]["remote_pid"].clone().unwrap_or_default();
        // the backend pid is the real one
        assert_eq!(busy.one("SELECT pg_backend_pid()").await, pid);

        let stats = admin.show("SHOW STATS").await;
        // 10 from `idle`, 3 from `busy` (BEGIN, SELECT 1, pg_backend_pid); `busy`'s
        // transaction is still open
        assert_eq!(stats.num("database", "app", "total_query_count"), 13);
        assert_eq!(stats.num("database", "app", "total_xact_count"), 10);
        assert!(stats.num("database", "app", "total_received") > 0);
        assert!(stats.num("database", "app", "total_sent") > 0);
        busy.q("COMMIT").await;
        let stats = admin.show("SHOW STATS_TOTALS").await;
        assert_eq!(stats.num("database", "app", "xact_count"), 11);
        assert_eq!(stats.num("database", "app", "query_count"), 14);

        let latency = admin.show("SHOW LATENCY").await;
        assert_eq!(latency.num("database", "app", "queries"), 14);
        assert_eq!(latency.num("database", "app", "xacts"), 11);
        let p50 = latency.num("database", "app", "query_p50_us");
        let p99 = latency.num("database", "app", "query_p99_us");
        assert!(p50 > 0 && p50 <= p99, "{latency:#?}");

        let dbs = admin.show("SHOW DATABASES").await;
        assert_starts_with(&dbs, DATABASES_COLUMNS, "SHOW DATABASES");
        assert_eq!(dbs.num("name", "app", "pool_size"), 3);
        assert_eq!(dbs.num("name", "app", "port"), i64::from(c.primary_port));
        assert!(dbs.num("name", "app", "current_connections") >= 1);
        assert_eq!(dbs.num("name", "app", "paused"), 0);

        let users = admin.show("SHOW USERS").await;
        assert_eq!(users.columns, ["name", "pool_mode"]);
        assert_eq!(users.with("name", "admin").len(), 1);

        let cfg = admin.show("SHOW CONFIG").await;
        assert_eq!(cfg.columns, ["key", "value", "default", "changeable"]);
        let size = cfg.with("key", "default_pool_size");
        assert_eq!(size[0]["value"].as_deref(), Some("3"));
        assert_eq!(size[0]["default"].as_deref(), Some("20"));
        assert_eq!(size[0]["changeable"].as_deref(), Some("yes"));

        let lists = admin.show("SHOW LISTS").await;
        assert_eq!(lists.columns, ["list", "items"]);
        assert_eq!(
            lists.num("list", "used_clients", "items"),
            3,
            "two app clients, one console"
        );
        assert_eq!(lists.num("list", "databases", "items"), 2);

        let version = admin.show("SHOW VERSION").await;
        assert!(
            version.rows[0]["version"]
                .as_deref()
                .unwrap_or("")
                .starts_with("pgsluice ")
        );

        // SHOW HELP answers with a notice (tokio-postgres hands it to the connection)
        admin.q("SHOW HELP").await;

        // clients leaving show up too: busy, the console and psql's own console session
        drop(idle);
        assert!(
            wait_until(Duration::from_secs(10), || {
                let out = psql_ok(&p.url("admin", "admin_pw", "pgbouncer"), "SHOW LISTS");
                out.lines().any(|l| l == "used_clients|3")
            }),
            "a disconnected client left SHOW LISTS"
        );
    });
}

#[test]
fn show_prepared_and_pins() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let a = connect(&app).await;
        let b = connect(&app).await;
        let sql = "SELECT $1::int + 1";
        for client in [&a, &b] {
            let stmt = client.client.prepare(sql).await.expect("prepare");
            let row = client
                .client
                .query_one(&stmt, &[&41i32])
                .await
                .expect("execute");
            assert_eq!(row.get::<_, i32>(0), 42);
        }
        let prepared = admin.show("SHOW PREPARED").await;
        let rows = prepared.with("query", sql);
        assert_eq!(rows.len(), 1, "{prepared:#?}");
        let n = |c: &str| rows[0][c].as_deref().unwrap_or("").parse::<i64>().unwrap();
        assert_eq!(n("client_prepares"), 2, "{prepared:#?}");
        assert!(n("server_prepares") >= 1, "{prepared:#?}");
        // tokio-postgres leaves the parameter types to the server
        assert_eq!(n("params"), 0);
        assert_eq!(rows[0]["validated"].as_deref(), Some("t"));

        assert!(admin.show("SHOW PINS").await.rows.is_empty());
        a.q("LISTEN news").await;
        let pins = admin.show("SHOW PINS").await;
        assert_eq!(pins.rows.len(), 1, "{pins:#?}");
        assert_eq!(pins.rows[0]["pins"].as_deref(), Some("listen"));
        assert!(
            pins.rows[0]["server"]
                .as_deref()
                .unwrap_or("")
                .starts_with('s')
        );
        let clients = admin.show("SHOW CLIENTS").await;
        assert_eq!(clients.with("pins", "listen").len(), 1);
        a.q("UNLISTEN *").await;
        assert!(admin.show("SHOW PINS").await.rows.is_empty());
    });
}

#[test]
fn pause_holds_new_transactions_and_resume_releases_them() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let running = connect(&app).await;
        running.q("BEGIN").await;
        running.q("SELECT 1").await;

        // PAUSE waits for the running transaction to finish
        let admin2 = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let pause = tokio::spawn(async move {
            admin2.q("PAUSE app").await;
            admin2
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !pause.is_finished(),
            "PAUSE returned while a transaction ran"
        );
        running.q("SELECT 2").await; // the running transaction goes on undisturbed
        running.q("COMMIT").await;
        let admin2 = within("PAUSE after the COMMIT", pause)
            .await
            .expect("PAUSE task");
        let dbs = admin.show("SHOW DATABASES").await;
        assert_eq!(dbs.num("name", "app", "paused"), 1);

        // a new transaction is held, not refused
        let held = tokio::spawn(async move {
            let r = running.try_q("SELECT 3").await;
            (running, r)
        });
        assert!(
            {
                let mut seen = false;
                for _ in 0..100 {
                    let pools = admin.show("SHOW POOLS").await;
                    if pools.num("database", "app", "cl_waiting") == 1 {
                        seen = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                seen
            },
            "the held client is not shown waiting"
        );
        assert!(!held.is_finished(), "a query ran while paused");
        let clients = admin.show("SHOW CLIENTS").await;
        assert_eq!(clients.with("state", "waiting").len(), 1, "{clients:#?}");

        admin2.q("RESUME app").await;
        let (running, r) = within("the held query after RESUME", held)
            .await
            .expect("task");
        let rows = rows_of(r.unwrap_or_else(|e| panic!("held query failed: {e:?}")));
        assert_eq!(rows.rows[0]["?column?"].as_deref(), Some("3"));
        assert_eq!(running.one("SELECT 4").await, "4");
        assert_eq!(
            admin.fails("RESUME app").await,
            "55000",
            "not paused any more"
        );

        // PAUSE of everything, then RESUME of everything
        admin.q("PAUSE").await;
        assert_eq!(
            admin
                .show("SHOW DATABASES")
                .await
                .num("name", "postgres", "paused"),
            1
        );
        admin.q("RESUME").await;
        assert_eq!(running.one("SELECT 5").await, "5");
        assert_eq!(admin.fails("PAUSE nosuchdb").await, "3D000");
    });
}

#[test]
fn kill_disable_enable_and_shutdown() {
    let c = Cluster::start(0);
    let mut p = Pooler::start(&config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let victim = connect(&app).await;
        victim.q("BEGIN").await;
        victim.q("SELECT 1").await;
        let other = connect(&p.url("app", "app_pw", "postgres")).await;
        admin.q("KILL app").await;
        let why = victim.wait_closed("the killed client's connection").await;
        assert_eq!(why.as_deref(), Some("57P01"));
        // other databases are untouched; the killed one is paused until RESUME
        assert_eq!(other.one("SELECT 1").await, "1");
        assert_eq!(
            admin
                .show("SHOW DATABASES")
                .await
                .num("name", "app", "paused"),
            1
        );
        admin.q("RESUME app").await;

        admin.q("DISABLE app").await;
        let refused = try_connect(&app)
            .await
            .err()
            .expect("login to a disabled database");
        assert_eq!(code(&refused).as_deref(), Some("55000"), "{refused:?}");
        admin.q("ENABLE app").await;
        assert_eq!(connect(&app).await.one("SELECT 1").await, "1");
        assert_eq!(admin.fails("KILL pgsluice").await, "0A000");

        // SHUTDOWN closes everyone now and exits
        let stuck = connect(&app).await;
        stuck.q("BEGIN").await;
        admin.q("SHUTDOWN").await;
        let why = stuck.wait_closed("client during SHUTDOWN").await;
        assert_eq!(why.as_deref(), Some("57P01"));
    });
    let status = p
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("pgsluice still runs after SHUTDOWN:\n{}", p.log()));
    assert!(status.success(), "exit {status}:\n{}", p.log());
}

#[test]
fn reload_and_set_change_the_pool_size() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 1, ""));
    let app = p.url("app", "app_pw", "app");
    let admin_url = p.url("admin", "admin_pw", "pgsluice");
    rt().block_on(async {
        let admin = connect(&admin_url).await;
        let busy = connect(&app).await;
        busy.q("BEGIN").await;
        busy.q("SELECT 1").await;
        // with one connection, a second client waits
        let second = connect(&app).await;
        let waiting = tokio::spawn(async move {
            second.q("SELECT 2").await;
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "pool size 1 served two transactions"
        );

        p.rewrite_config(&config(&c, "transaction", 3, ""));
        admin.q("RELOAD").await;
        within("the waiting client after RELOAD", waiting)
            .await
            .expect("task");
        assert_eq!(
            admin
                .show("SHOW DATABASES")
                .await
                .num("name", "app", "pool_size"),
            3
        );
        let pools = admin.show("SHOW POOLS").await;
        assert_eq!(pools.num("database", "app", "cl_waiting"), 0);
        busy.q("COMMIT").await;

        admin.q("SET default_pool_size = 5").await;
        assert_eq!(
            admin
                .show("SHOW DATABASES")
                .await
                .num("name", "app", "pool_size"),
            5
        );
        let cfg = admin.show("SHOW CONFIG").await;
        assert_eq!(
            cfg.with("key", "default_pool_size")[0]["value"].as_deref(),
            Some("5")
        );
        assert_eq!(admin.fails("SET default_pool_size = 0").await, "22023");
        assert_eq!(admin.fails("SET listen_addr = '1.2.3.4:5'").await, "55P02");

        // a bad file is refused and the running configuration kept
        p.rewrite_config("[general]\nnot valid toml = = =\n");
        assert_eq!(admin.fails("RELOAD").await, "F0000");
        assert_eq!(
            admin
                .show("SHOW DATABASES")
                .await
                .num("name", "app", "pool_size"),
            5
        );
    });
}

#[test]
fn console_permissions_and_errors() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 2, ""));
    rt().block_on(async {
        // a stats user may SHOW, nothing else
        let stats = connect(&p.url("watcher", "watcher_pw", "pgbouncer")).await;
        assert!(!stats.show("SHOW POOLS").await.columns.is_empty());
        assert!(!stats.show("SHOW SERVERS").await.columns.is_empty());
        match stats.try_q("PAUSE").await {
            Err(e) => {
                assert_eq!(code(&e).as_deref(), Some("42501"));
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                assert!(msg.contains("stats user"), "{msg}");
            }
            Ok(r) => panic!("a stats user paused: {r:?}"),
        }
        assert_eq!(stats.fails("RELOAD").await, "42501");
        assert_eq!(stats.fails("SET default_pool_size = 4").await, "42501");

        // a user in neither list is refused at login
        for db in ["pgsluice", "pgbouncer"] {
            let e = try_connect(&p.url("app", "app_pw", db))
                .await
                .err()
                .expect("a normal user reached the console");
            assert_eq!(code(&e).as_deref(), Some("42501"), "{e:?}");
        }
        // the console still authenticates: a wrong password is refused as usual
        let e = try_connect(&p.url("admin", "wrong", "pgsluice"))
            .await
            .err()
            .expect("wrong password accepted");
        assert_eq!(code(&e).as_deref(), Some("28P01"), "{e:?}");

        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        match admin.try_q("SHOW NOTHING").await {
            Err(e) => {
                assert_eq!(code(&e).as_deref(), Some("42601"));
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_default();
                for cmd in ["SHOW HELP", "RELOAD", "PAUSE", "KILL", "SHUTDOWN"] {
                    assert!(msg.contains(cmd), "error lists {cmd}: {msg}");
                }
            }
            Ok(r) => panic!("SHOW NOTHING answered {r:?}"),
        }
        // the extended protocol gets a clear error, and the session goes on
        let e = admin
            .client
            .query("SHOW POOLS", &[])
            .await
            .expect_err("extended protocol on the console");
        assert_eq!(code(&e).as_deref(), Some("0A000"), "{e:?}");
        assert!(!admin.show("show pools").await.columns.is_empty());
        // several commands in one Query, and psql
        let out = psql_ok(
            &p.url("admin", "admin_pw", "pgsluice"),
            "SHOW VERSION; SHOW LISTS;",
        );
        assert!(
            out.contains("pgsluice ") && out.contains("used_clients"),
            "{out}"
        );
    });
    let out = psql(&p.url("app", "app_pw", "pgsluice"), "SHOW POOLS");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin console"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------ HTTP

#[test]
fn metrics_parse_and_count_what_ran() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let p = Pooler::start(&config(&c, "transaction", 2, &http));
    const N: usize = 25;
    rt().block_on(async {
        let app = connect(&p.url("app", "app_pw", "app")).await;
        for i in 0..N {
            assert_eq!(app.one(&format!("SELECT {i}")).await, i.to_string());
        }
        assert_eq!(app.fails("SELECT * FROM no_such_table").await, "42P01");
        assert_eq!(app.fails("SELECT 1/0").await, "22012");
        app.q("BEGIN").await;
        app.q("SELECT 1").await;
        app.q("COMMIT").await;
        let idle = connect(&p.url("app", "app_pw", "app")).await;

        let pool = [("database", "app"), ("user", "app"), ("node", "0")];
        let state = |s: &[Sample], family: &str, labels: &[(&str, &str)], st: &str| {
            metric_opt(s, family, &[labels, &[("state", st)]].concat())
        };
        let app_user = [("database", "app"), ("user", "app")];
        // `app` has its last answer; it gives its server back a moment later.
        let s = scrape_until(port, |s| {
            let c = |st| state(s, "pgsluice_client_connections", &app_user, st);
            c("idle") == Some(2.0)
                && c("active") == Some(0.0)
                && c("waiting") == Some(0.0)
                && state(s, "pgsluice_server_connections", &pool, "idle")
                    .is_some_and(|n| (1.0..=2.0).contains(&n))
        });
        // N selects, two failures, BEGIN + SELECT + COMMIT in one transaction
        let queries = N as f64 + 2.0 + 3.0;
        let xacts = N as f64 + 2.0 + 1.0;
        assert_eq!(metric(&s, "pgsluice_queries_total", &pool), queries);
        assert_eq!(metric(&s, "pgsluice_transactions_total", &pool), xacts);
        assert_eq!(
            metric(&s, "pgsluice_query_duration_seconds_count", &pool),
            queries
        );
        let inf = [pool.as_slice(), &[("le", "+Inf")]].concat();
        assert_eq!(
            metric(&s, "pgsluice_query_duration_seconds_bucket", &inf),
            queries
        );
        assert_eq!(
            metric(&s, "pgsluice_transaction_duration_seconds_count", &pool),
            xacts
        );
        assert!(metric(&s, "pgsluice_pool_wait_duration_seconds_count", &pool) >= 1.0);
        assert!(metric(&s, "pgsluice_query_duration_seconds_sum", &pool) > 0.0);
        let class = |c: &'static str| [pool.as_slice(), &[("class", c)]].concat();
        assert_eq!(
            metric(&s, "pgsluice_server_errors_total", &class("42")),
            1.0
        );
        assert_eq!(
            metric(&s, "pgsluice_server_errors_total", &class("22")),
            1.0
        );
        assert!(metric(&s, "pgsluice_client_received_bytes_total", &pool) > 0.0);
        assert!(metric(&s, "pgsluice_client_sent_bytes_total", &pool) > 0.0);
        assert_eq!(metric(&s, "pgsluice_pool_wait_timeouts_total", &pool), 0.0);
        let clients = |st: &str| {
            metric(
                &s,
                "pgsluice_client_connections",
                &[("database", "app"), ("user", "app"), ("state", st)],
            )
        };
        assert_eq!(clients("idle"), 2.0);
        assert_eq!(clients("active"), 0.0);
        assert_eq!(clients("waiting"), 0.0);
        let idle_servers = metric(
            &s,
            "pgsluice_server_connections",
            &[pool.as_slice(), &[("state", "idle")]].concat(),
        );
        assert!((1.0..=2.0).contains(&idle_servers), "{idle_servers}");
        assert_eq!(metric(&s, "pgsluice_draining", &[]), 0.0);
        drop(idle);

        // the console agrees
        let admin = connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let stats = admin.show("SHOW STATS").await;
        assert_eq!(
            stats.num("database", "app", "total_query_count") as f64,
            queries
        );

        let (status, body) = http_get(port, "/healthz");
        assert_eq!((status, body.trim()), (200, "ok"));
        let (status, _) = http_get(port, "/nothing");
        assert_eq!(status, 404);
    });
}

#[test]
fn metrics_off_counts_nothing_but_connections() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let p = Pooler::start(&config(
        &c,
        "transaction",
        2,
        &format!("{http}\n[metrics]\nenabled = false\n"),
    ));
    rt().block_on(async {
        let app = connect(&p.url("app", "app_pw", "app")).await;
        for _ in 0..5 {
            app.q("SELECT 1").await;
        }
        let pool = [("database", "app"), ("user", "app"), ("node", "0")];
        let idle = [("database", "app"), ("user", "app"), ("state", "idle")];
        // The client has its last answer; it gives its server back a moment later.
        let s = scrape_until(port, |s| {
            metric_opt(s, "pgsluice_client_connections", &idle) == Some(1.0)
        });
        assert_eq!(metric(&s, "pgsluice_queries_total", &pool), 0.0);
        assert_eq!(metric(&s, "pgsluice_client_connections", &idle), 1.0);
    });
}

#[test]
fn readyz_fails_while_draining_and_for_an_unreachable_primary() {
    let c = Cluster::start(0);
    let (http, port) = http_section();
    let mut p = Pooler::start(&config(&c, "transaction", 2, &http));
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    rt().block_on(async {
        let app = connect(&p.url("app", "app_pw", "app")).await;
        app.q("BEGIN").await;
        app.q("SELECT 1").await;
        p.signal("TERM");
        assert!(
            wait_until(Duration::from_secs(10), || http_get(port, "/readyz").0
                == 503),
            "/readyz still ready during the drain"
        );
        let (_, body) = http_get(port, "/readyz");
        assert!(body.contains("draining"), "{body}");
        // alive all the same
        assert_eq!(http_get(port, "/healthz").0, 200);
        app.q("COMMIT").await;
    });
    p.wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("pgsluice still runs:\n{}", p.log()));

    // a database whose primary is down
    let (http, port) = http_section();
    let dead = free_port();
    let cfg = config(&c, "transaction", 2, &http)
        + &format!("\n[databases.gone]\nprimary = \"127.0.0.1:{dead}\"\n");
    let _p = Pooler::start(&cfg);
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"gone\""), "{body}");
}

// ------------------------------------------------------------------ slow query log

#[test]
fn slow_query_log_catches_slow_queries_only() {
    let c = Cluster::start(0);
    let p = Pooler::start(&config(&c, "transaction", 2, "").replacen(
        "[general]\n",
        "[general]\nslow_query_threshold = 0.1\n",
        1,
    ));
    rt().block_on(async {
        let app = connect(&p.url("app", "app_pw", "app")).await;
        app.q("SELECT 1").await;
        app.q("SELECT pg_sleep(0.2) /* simple */").await;
        // extended protocol: the text comes from the Parse
        let stmt = app
            .client
            .prepare("SELECT pg_sleep($1::float8), 'secret'")
            .await
            .expect("prepare");
        app.client.query(&stmt, &[&0.2f64]).await.expect("run");
        app.q("SELECT 1").await;
    });
    assert!(
        p.wait_for_log("pg_sleep($1::float8)", Duration::from_secs(10)),
        "extended-protocol slow query not logged:\n{}",
        p.log()
    );
    let log = p.log();
    let slow: Vec<&str> = log.lines().filter(|l| l.contains("slow query")).collect();
    assert_eq!(slow.len(), 2, "{slow:#?}");
    assert!(slow[0].contains("query=SELECT pg_sleep(?)"), "{}", slow[0]);
    assert!(
        slow[1].contains("query=SELECT pg_sleep($1::float8), ?"),
        "{}",
        slow[1]
    );
    for line in &slow {
        assert!(
            !line.contains("secret") && !line.contains("0.2)"),
            "literal leaked: {line}"
        );
        assert!(
            line.contains("node=0") && line.contains("wait_ms=") && line.contains("server_ms=")
        );
    }
}
