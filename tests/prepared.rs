//! Transaction-mode prepared statements (issue 3): protocol-level named
//! statements mapped to pooler-wide `sluice_<id>` names, the per-server LRU
//! (`general.max_prepared_statements`), re-preparing on a server that lacks a
//! statement, and SQL PREPARE/EXECUTE. Real drivers (pgbench -M prepared,
//! tokio-postgres, sqlx, psycopg 3), hand-made protocol batches, an eviction
//! stress test, and checks of what is really prepared on the servers
//! (`pg_prepared_statements`, asked through pgsluice, so of the server that
//! connection has).
//!
//! Pools are small so clients really move between server connections. Every
//! test starts its own cluster and pgsluice; every wait is bounded; nothing
//! asserts timings.
//!
//! Note on driver statement names: tokio-postgres names statements `s<N>`
//! from a process-wide counter, so its names never collide between clients of
//! one process; sqlx (`sqlx_s_<n>`), psycopg (`_pg3_<n>`) and pgbench (`P0_<n>`)
//! count per connection, and the raw-protocol tests reuse names on purpose, so
//! name collisions for different queries are covered there.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use common::{Cluster, Pooler, pg_connect, run_async, sq, sq1};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

// ------------------------------------------------------------------ helpers

/// A fresh cluster (no replicas) and pgsluice in front of it (client auth md5,
/// so the raw client below can log in), with `extra` lines in `[general]`.
fn setup(mode: &str, pool_size: u32, extra: &str) -> (Cluster, Pooler) {
    let cluster = Cluster::start(0);
    let cfg = cluster.pooler_config(mode, "md5", pool_size);
    let cfg = cfg.replacen("[general]\n", &format!("[general]\n{extra}\n"), 1);
    let pooler = Pooler::start(&cfg);
    (cluster, pooler)
}

/// URL of database app on pgsluice as app/app_pw.
fn app_url(p: &Pooler) -> String {
    p.url("app", "app_pw", "app")
}

/// Superuser tokio-postgres connection straight to the primary (for setup).
async fn admin(c: &Cluster) -> Client {
    pg_connect(&c.node_url("primary", "postgres", "", "app"))
        .await
        .0
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// tokio-postgres connect that returns an error instead of panicking (for
/// spawned tasks whose errors are collected).
async fn try_connect(url: &str) -> Result<Client, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    let (client, mut conn) = tokio::time::timeout(
        Duration::from_secs(30),
        config.connect(tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        while let Some(Ok(_)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {}
    });
    Ok(client)
}

/// Opens `n` clients to pgsluice, each in a transaction (so each holds its own
/// server connection: the pool has at most `n`), and runs `sql` (simple
/// query, first column) on each. Returns (server pid, rows) per server.
async fn on_every_server(url: &str, n: usize, sql: &str) -> Vec<(String, Vec<String>)> {
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
    let pids: HashSet<&String> = out.iter().map(|(p, _)| p).collect();
    assert_eq!(
        pids.len(),
        n,
        "{n} clients in transactions should hold {n} different servers: {out:?}"
    );
    out
}

/// Joins spawned tasks; panics with the first errors if any failed.
async fn join_all<T>(
    what: &str,
    handles: Vec<tokio::task::JoinHandle<Result<T, String>>>,
) -> Vec<T> {
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

// ------------------------------------------------------------------ 1. pgbench -M prepared

/// `pgbench -i -s 1` directly on the primary (as app, who then owns the tables).
fn pgbench_init(cluster: &Cluster) {
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "60",
            "pgbench",
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &cluster.primary_port.to_string(), "-U", "app", "app"])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `pgbench -n -M prepared ARGS` through pgsluice (90 s bound) and checks
/// its report: success, zero failed transactions, some processed.
fn pgbench_prepared(pooler: &Pooler, args: &[&str]) {
    let out = Command::new("timeout")
        .args(["-k", "5", "90", "pgbench", "-n", "-M", "prepared"])
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pooler.port.to_string(),
            "-U",
            "app",
            "app",
        ])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "pgbench -M prepared {args:?}: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(out.status.success(), "pgbench failed: {report}");
    let field = |prefix: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output: {report}"))
    };
    assert_eq!(field("number of failed transactions:"), 0.0, "{report}");
    assert!(
        field("number of transactions actually processed:") > 0.0,
        "{report}"
    );
    assert!(!stderr.contains("error"), "{report}");
}

#[test]
fn pgbench_prepared_select_only_50_clients_pool_5() {
    let (cluster, pooler) = setup("transaction", 5, "");
    pgbench_init(&cluster);
    pgbench_prepared(&pooler, &["-S", "-c", "50", "-j", "2", "-T", "5"]);
    // 50 clients prepared the same SELECT (as P0_1 each): one server-side
    // statement per server connection, under pgsluice's name.
    run_async(60, async {
        for (pid, rows) in on_every_server(
            &app_url(&pooler),
            5,
            "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%pgbench_accounts%'",
        )
        .await
        {
            assert!(
                rows.len() <= 1 && rows.iter().all(|n| n.starts_with("sluice_")),
                "server {pid}: pgbench's SELECT prepared as {rows:?}"
            );
        }
    });
}

#[test]
fn pgbench_prepared_tpcb_20_clients_pool_5() {
    let (cluster, pooler) = setup("transaction", 5, "");
    pgbench_init(&cluster);
    pgbench_prepared(&pooler, &["-c", "20", "-j", "2", "-T", "5"]);
}

// ------------------------------------------------------------------ 2. tokio-postgres

const TP_SQL: [&str; 3] = [
    "SELECT $1::int * 2",
    "SELECT $1::text || 'x'",
    "SELECT count(*) FROM t WHERE id < $1",
];

/// One tokio-postgres client: prepares the three statements in a random
/// order, then 30 rounds of all three (random order, random arguments), every
/// fifth round inside BEGIN/COMMIT when `transactions`.
async fn tp_client(url: String, id: u64, transactions: bool) -> Result<usize, String> {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + id);
    let client = try_connect(&url)
        .await
        .map_err(|e| format!("client {id}: {e}"))?;
    let mut order = [0usize, 1, 2];
    order.shuffle(&mut rng);
    let mut stmts: [Option<Statement>; 3] = [None, None, None];
    for &k in &order {
        let s = client
            .prepare(TP_SQL[k])
            .await
            .map_err(|e| format!("client {id}: prepare {:?}: {e}", TP_SQL[k]))?;
        let want = [Type::INT4, Type::TEXT, Type::INT4][k].clone();
        if s.params() != [want.clone()] {
            return Err(format!(
                "client {id}: {:?} described with params {:?}, want [{want}]",
                TP_SQL[k],
                s.params()
            ));
        }
        stmts[k] = Some(s);
    }
    let stmts: Vec<Statement> = stmts.into_iter().map(Option::unwrap).collect();
    let mut checked = 0;
    for round in 0..30 {
        let in_tx = transactions && round % 5 == 4;
        if in_tx {
            client
                .simple_query("BEGIN")
                .await
                .map_err(|e| format!("client {id} round {round}: BEGIN: {e}"))?;
        }
        let mut ks = [0usize, 1, 2];
        ks.shuffle(&mut rng);
        for k in ks {
            let err = |e: tokio_postgres::Error| {
                format!(
                    "client {id} round {round}: {:?}: {e} ({})",
                    TP_SQL[k],
                    sqlstate(&e)
                )
            };
            match k {
                0 => {
                    let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                    let got: i32 = client
                        .query_one(&stmts[0], &[&x])
                        .await
                        .map_err(err)?
                        .get(0);
                    if got != x * 2 {
                        return Err(format!("client {id}: {x}*2 returned {got}"));
                    }
                }
                1 => {
                    let s = format!("c{id}-{}", rng.gen_range(0..1_000_000));
                    let got: String = client
                        .query_one(&stmts[1], &[&s])
                        .await
                        .map_err(err)?
                        .get(0);
                    if got != format!("{s}x") {
                        return Err(format!("client {id}: {s:?} || 'x' returned {got:?}"));
                    }
                }
                _ => {
                    let n: i32 = rng.gen_range(-5..1200);
                    let got: i64 = client
                        .query_one(&stmts[2], &[&n])
                        .await
                        .map_err(err)?
                        .get(0);
                    let want = (n as i64 - 1).clamp(0, 1000);
                    if got != want {
                        return Err(format!(
                            "client {id}: count(id < {n}) returned {got}, want {want}"
                        ));
                    }
                }
            }
            checked += 1;
        }
        if in_tx {
            client
                .simple_query("COMMIT")
                .await
                .map_err(|e| format!("client {id} round {round}: COMMIT: {e}"))?;
        }
    }
    Ok(checked)
}

fn tokio_postgres_many_tasks(mode: &str) {
    let (cluster, pooler) = setup(mode, 3, "");
    run_async(180, async {
        admin(&cluster)
            .await
            .batch_execute(
                "CREATE TABLE t (id int PRIMARY KEY); \
                 INSERT INTO t SELECT generate_series(1, 1000); ALTER TABLE t OWNER TO app",
            )
            .await
            .unwrap();
        let url = app_url(&pooler);
        let handles = (0..40u64)
            .map(|id| tokio::spawn(tp_client(url.clone(), id, mode == "transaction")))
            .collect();
        let checked: usize = join_all("tokio-postgres clients", handles)
            .await
            .into_iter()
            .sum();
        assert_eq!(checked, 40 * 30 * 3);
    });
}

#[test]
fn tokio_postgres_prepared_40_tasks_pool_3_transaction_mode() {
    tokio_postgres_many_tasks("transaction");
}

#[test]
fn tokio_postgres_prepared_40_tasks_pool_3_statement_mode() {
    tokio_postgres_many_tasks("statement");
}

// ------------------------------------------------------------------ 3. sqlx

#[test]
fn sqlx_pool_of_10_over_pool_of_3() {
    use sqlx::Row;
    let (_cluster, pooler) = setup("transaction", 3, "");
    run_async(180, async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&app_url(&pooler))
            .await
            .expect("sqlx connect through pgsluice");
        let handles = (0..20i64)
            .map(|task| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(0x5417 + task as u64);
                    for j in 0..50i64 {
                        let i = task * 1000 + j;
                        let err = |e: sqlx::Error| format!("task {task} query {j}: {e}");
                        // sqlx names its cached statements sqlx_s_1, sqlx_s_2, ...
                        // per connection, in order of first use: the random
                        // order makes the same name mean different queries on
                        // different connections.
                        let other_first = rng.gen_bool(0.5);
                        let other = rng.gen_range(0..2);
                        for step in 0..2 {
                            if (step == 0) != other_first {
                                let row = sqlx::query("SELECT $1::int8 + 1")
                                    .bind(i)
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let got: i64 = row.try_get(0).map_err(err)?;
                                if got != i + 1 {
                                    return Err(format!("task {task}: {i} + 1 returned {got}"));
                                }
                            } else if other == 0 {
                                let s = format!("t{task}-{j}");
                                let row = sqlx::query("SELECT $1::text || '-sqlx'")
                                    .bind(&s)
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let got: String = row.try_get(0).map_err(err)?;
                                if got != format!("{s}-sqlx") {
                                    return Err(format!("task {task}: {s:?} returned {got:?}"));
                                }
                            } else {
                                let x = (i % 100_000) as i32;
                                let row = sqlx::query("SELECT $1::int4 * 3, $2::text")
                                    .bind(x)
                                    .bind(task.to_string())
                                    .fetch_one(&pool)
                                    .await
                                    .map_err(err)?;
                                let (a, b): (i32, String) =
                                    (row.try_get(0).map_err(err)?, row.try_get(1).map_err(err)?);
                                if a != x * 3 || b != task.to_string() {
                                    return Err(format!(
                                        "task {task}: ({x}*3, {task}) returned ({a}, {b})"
                                    ));
                                }
                            }
                        }
                        if j % 10 == 9 {
                            // A transaction: the cached statement inside BEGIN/COMMIT.
                            let mut tx = pool.begin().await.map_err(err)?;
                            let row = sqlx::query("SELECT $1::int8 + 1")
                                .bind(-i)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(err)?;
                            let got: i64 = row.try_get(0).map_err(err)?;
                            tx.commit().await.map_err(err)?;
                            if got != 1 - i {
                                return Err(format!(
                                    "task {task}: -{i} + 1 returned {got} in a transaction"
                                ));
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        join_all("sqlx tasks", handles).await;
        pool.close().await;
    });
}

// ------------------------------------------------------------------ 4. psycopg 3

#[test]
fn psycopg3_prepare_threshold_zero() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/psycopg_check.py");
    let probe = Command::new("python3")
        .args(["-c", "import psycopg; print(psycopg.__version__)"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 cannot be run ({e}): install python3, then `python3 -m pip install \"psycopg[binary]\"` (.ci/run does both)"
        ),
        Ok(o) if !o.status.success() => panic!(
            "psycopg 3 is not importable by python3: run `python3 -m pip install \"psycopg[binary]\"` (.ci/run installs it)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {}
    }
    let (_cluster, pooler) = setup("transaction", 3, "");
    let out = Command::new("timeout")
        .args(["-k", "5", "150", "python3"])
        .arg(&script)
        .arg(app_url(&pooler))
        .args(["12", "40"])
        .output()
        .expect("run psycopg_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("psycopg_check OK"),
        "psycopg_check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

// ------------------------------------------------------------------ 5. eviction stress

#[test]
fn eviction_stress_200_clients_50_statements_limit_20_pool_4() {
    const CLIENTS: i32 = 200;
    const PER_CLIENT: i32 = 50;
    const STRIDE: i32 = 10; // client c uses k in c*10 .. c*10+50: overlaps the next four
    const LIMIT: usize = 20;
    const SLACK: usize = 3;
    let (_cluster, pooler) = setup("transaction", 4, "max_prepared_statements = 20");
    run_async(300, async {
        let url = app_url(&pooler);
        let gate = Arc::new(tokio::sync::Semaphore::new(50));
        let handles = (0..CLIENTS)
            .map(|c| {
                let url = url.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.unwrap();
                    let mut rng = StdRng::seed_from_u64(0xe71c + c as u64);
                    let client = try_connect(&url)
                        .await
                        .map_err(|e| format!("client {c}: {e}"))?;
                    let mut ks: Vec<i32> = (c * STRIDE..c * STRIDE + PER_CLIENT).collect();
                    ks.shuffle(&mut rng);
                    let mut stmts = Vec::new();
                    for &k in &ks {
                        let s = client
                            .prepare(&format!("SELECT $1::int + {k}"))
                            .await
                            .map_err(|e| {
                                format!("client {c}: prepare +{k}: {e} ({})", sqlstate(&e))
                            })?;
                        // Execute right away once, then twice more in random order later.
                        let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                        let got: i32 = client
                            .query_one(&s, &[&x])
                            .await
                            .map_err(|e| {
                                format!("client {c}: execute +{k}: {e} ({})", sqlstate(&e))
                            })?
                            .get(0);
                        if got != x + k {
                            return Err(format!("client {c}: {x} + {k} returned {got}"));
                        }
                        stmts.push((k, s));
                    }
                    for pass in 0..2 {
                        stmts.shuffle(&mut rng);
                        for (k, s) in &stmts {
                            let x: i32 = rng.gen_range(-1_000_000..1_000_000);
                            let got: i32 = client
                                .query_one(s, &[&x])
                                .await
                                .map_err(|e| {
                                    format!(
                                        "client {c} pass {pass}: execute +{k}: {e} ({})",
                                        sqlstate(&e)
                                    )
                                })?
                                .get(0);
                            if got != x + k {
                                return Err(format!(
                                    "client {c} pass {pass}: {x} + {k} returned {got}"
                                ));
                            }
                        }
                    }
                    // The last clients stay connected (statements alive) for the check below.
                    Ok((c >= CLIENTS - 10).then_some((client, stmts)))
                })
            })
            .collect();
        let kept = join_all("eviction stress clients", handles).await;

        let servers = on_every_server(
            &url,
            4,
            "SELECT name || ' ' || statement FROM pg_prepared_statements ORDER BY name",
        )
        .await;
        let mut total = 0;
        for (pid, rows) in &servers {
            assert!(
                rows.len() <= LIMIT + SLACK,
                "server {pid} has {} prepared statements, limit {LIMIT}: {rows:?}",
                rows.len()
            );
            assert!(
                rows.iter()
                    .all(|r| r.starts_with("sluice_") && r.contains("SELECT $1::int + ")),
                "server {pid}: statements not under pgsluice's names: {rows:?}"
            );
            total += rows.len();
        }
        assert!(
            total > 0,
            "no statement prepared on any server: {servers:?}"
        );
        drop(kept);
    });
}

// ------------------------------------------------------------------ raw protocol client

/// A frontend speaking the protocol by hand (trust, cleartext or md5 login).
struct Raw {
    sock: TcpStream,
    buf: BytesMut,
}

/// One backend message: tag and body (without the length).
struct Msg {
    tag: u8,
    body: Bytes,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(120)];
        write!(f, "{}:{}", self.tag as char, String::from_utf8_lossy(shown))
    }
}

impl Msg {
    /// Fields of an ErrorResponse / NoticeResponse by code letter.
    fn field(&self, code: u8) -> Option<String> {
        self.body
            .split(|&b| b == 0)
            .find(|f| f.first() == Some(&code))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    }

    /// Columns of a DataRow as text ("NULL" for NULL).
    fn columns(&self) -> Vec<String> {
        let mut b = self.body.clone();
        let n = b.get_i16();
        (0..n)
            .map(|_| {
                let len = b.get_i32();
                if len < 0 {
                    "NULL".to_string()
                } else {
                    String::from_utf8_lossy(&b.split_to(len as usize)).into_owned()
                }
            })
            .collect()
    }

    /// Parameter type OIDs of a ParameterDescription.
    fn param_oids(&self) -> Vec<u32> {
        let mut b = self.body.clone();
        let n = b.get_i16();
        (0..n).map(|_| b.get_u32()).collect()
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.push(tag);
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

fn query_msg(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    frame(b'Q', &b)
}

/// Parse: statement `name` (empty = unnamed), `sql`, declared parameter types.
fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut p = Vec::new();
    cstr(&mut p, name);
    cstr(&mut p, sql);
    p.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        p.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &p)
}

/// Bind of statement `stmt` to the unnamed portal, text parameters and results.
fn bind(stmt: &str, params: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for v in params {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

/// Execute of the unnamed portal, all rows.
fn execute() -> Vec<u8> {
    let mut e = Vec::new();
    cstr(&mut e, "");
    e.extend_from_slice(&0i32.to_be_bytes());
    frame(b'E', &e)
}

/// Describe ('S' statement or 'P' portal) / Close ('S' or 'P') of `name`.
fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut d = vec![kind];
    cstr(&mut d, name);
    frame(b'D', &d)
}

fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut d = vec![kind];
    cstr(&mut d, name);
    frame(b'C', &d)
}

fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// First column of every DataRow.
fn data(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.columns()[0].clone())
        .collect()
}

/// SQLSTATE of the first ErrorResponse.
fn err_code(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| m.field(b'C'))
}

/// Transaction status byte of the last ReadyForQuery.
fn status(msgs: &[Msg]) -> char {
    let z = msgs.last().expect("messages");
    assert_eq!(z.tag, b'Z', "{msgs:?}");
    z.body[0] as char
}

impl Raw {
    /// Connects and logs in (trust, cleartext or md5), through the first ReadyForQuery.
    async fn connect(port: u16, user: &str, password: &str, db: &str) -> Raw {
        let sock = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        let mut raw = Raw {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", user), ("database", db)] {
            cstr(&mut body, k);
            cstr(&mut body, v);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        raw.send(&startup).await;
        loop {
            let m = raw.recv().await;
            match m.tag {
                b'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into().unwrap());
                    match code {
                        0 => break,
                        3 => {
                            let mut b = Vec::new();
                            cstr(&mut b, password);
                            raw.send(&frame(b'p', &b)).await;
                        }
                        5 => {
                            let salt: [u8; 4] = m.body[4..8].try_into().unwrap();
                            let hash = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                password.as_bytes(),
                                salt,
                            );
                            let mut b = Vec::new();
                            cstr(&mut b, &hash);
                            raw.send(&frame(b'p', &b)).await;
                        }
                        other => panic!("raw client: unsupported auth request {other}"),
                    }
                }
                b'E' => panic!("login failed: {m:?}"),
                _ => panic!("unexpected message during auth: {m:?}"),
            }
        }
        let msgs = raw.until_ready().await;
        assert!(msgs.iter().all(|m| m.tag != b'E'), "login failed: {msgs:?}");
        raw
    }

    async fn app(p: &Pooler) -> Raw {
        Raw::connect(p.port, "app", "app_pw", "app").await
    }

    async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(Duration::from_secs(10), self.sock.write_all(bytes))
            .await
            .expect("write timed out")
            .expect("write");
    }

    /// The next backend message (fails the test after 20 s of silence).
    async fn recv(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                assert!(len >= 4, "bad message length {len}");
                if self.buf.len() > len {
                    let mut m = self.buf.split_to(len + 1);
                    let tag = m[0];
                    m.advance(5);
                    let m = Msg {
                        tag,
                        body: m.freeze(),
                    };
                    if m.tag == b'N' || m.tag == b'S' {
                        continue; // notices, parameter status: not what these tests look at
                    }
                    return m;
                }
                self.buf.reserve(len + 1 - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(64 * 1024);
            }
            let n =
                tokio::time::timeout(Duration::from_secs(20), self.sock.read_buf(&mut self.buf))
                    .await
                    .expect("no message from pgsluice within 20 s")
                    .expect("read");
            assert!(n > 0, "pgsluice closed the connection");
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends `parts` in one write; returns the replies through ReadyForQuery.
    async fn batch(&mut self, parts: &[Vec<u8>]) -> Vec<Msg> {
        self.send(&parts.concat()).await;
        self.until_ready().await
    }
}

// ------------------------------------------------------------------ 6. protocol semantics

#[test]
fn failed_parse_reports_error_and_leaves_no_statement() {
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;

        // Parse of invalid SQL: the server's 42601, then ReadyForQuery.
        let r = a.batch(&[parse("bad", "SELEC 1", &[]), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("42601")),
            "{r:?}"
        );
        assert_eq!(status(&r), 'I');
        // The name is unknown afterwards: Bind and Describe give 26000.
        let r = a.batch(&[bind("bad", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        let r = a.batch(&[describe(b'S', "bad"), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        // The same name with valid SQL works.
        let r = a
            .batch(&[
                parse("bad", "SELECT 42", &[]),
                bind("bad", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "12DCZ", "{r:?}");
        assert_eq!(data(&r), ["42"]);

        // In one pipeline: a good Parse, a bad one, a Bind of the bad one. The
        // error comes where PostgreSQL puts it (after the first ParseComplete),
        // the rest up to Sync is skipped, and the good statement exists.
        let r = a
            .batch(&[
                parse("good1", "SELECT 1", &[]),
                parse("bad2", "SELECT FROM WHERE", &[]),
                bind("bad2", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("1EZ", Some("42601")),
            "{r:?}"
        );
        let r = a.batch(&[bind("good1", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["1".to_string()]),
            "{r:?}"
        );
        let r = a.batch(&[bind("bad2", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");

        // A semantic error (42703), found by the server's analysis: its error too.
        let r = a
            .batch(&[parse("sem", "SELECT no_such_column", &[]), sync()])
            .await;
        assert_eq!(err_code(&r).as_deref(), Some("42703"), "{r:?}");

        // Parse + Flush (no Sync): the error arrives after the Flush, before any Sync.
        a.send(&[parse("fl", "SELEC 1", &[]), flush()].concat())
            .await;
        let m = a.recv().await;
        assert_eq!(
            (m.tag, m.field(b'C').as_deref()),
            (b'E', Some("42601")),
            "{m:?}"
        );
        let r = a.batch(&[sync()]).await;
        assert_eq!(tags(&r), "Z", "{r:?}");
        // Parse + Flush of a valid statement: ParseComplete before any Sync.
        a.send(&[parse("fl", "SELECT 7", &[]), flush()].concat())
            .await;
        let m = a.recv().await;
        assert_eq!(m.tag, b'1', "{m:?}");
        let r = a.batch(&[bind("fl", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["7".to_string()]),
            "{r:?}"
        );
        // The same text from another client (already on the server): ParseComplete after Flush too.
        let mut b = Raw::app(&pooler).await;
        b.send(&[parse("other", "SELECT 7", &[]), flush()].concat())
            .await;
        let m = b.recv().await;
        assert_eq!(m.tag, b'1', "{m:?}");
        let r = b.batch(&[bind("other", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["7".to_string()]),
            "{r:?}"
        );

        // Inside an explicit transaction: the failed Parse fails the transaction
        // (status E); after ROLLBACK the name is still unknown.
        let r = a.batch(&[query_msg("BEGIN")]).await;
        assert_eq!(status(&r), 'T');
        let r = a.batch(&[parse("txbad", "SELEC 2", &[]), sync()]).await;
        assert_eq!(
            (err_code(&r).as_deref(), status(&r)),
            (Some("42601"), 'E'),
            "{r:?}"
        );
        let r = a.batch(&[query_msg("ROLLBACK")]).await;
        assert_eq!(status(&r), 'I');
        let r = a.batch(&[bind("txbad", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");
        let r = a
            .batch(&[
                parse("txbad", "SELECT 'ok'", &[]),
                bind("txbad", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["ok"], "{r:?}");
    });
}

#[test]
fn close_and_reuse_of_statement_names() {
    // Pool of 1: both clients share one server, so a Close acting on more than
    // the client's own name would show.
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let mut b = Raw::app(&pooler).await;
        let r = a
            .batch(&[
                parse("s1", "SELECT 1", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DCZ", vec!["1".to_string()]),
            "{r:?}"
        );
        // B prepares the same text under another name (shared on the server).
        let r = b
            .batch(&[
                parse("x", "SELECT 1", &[]),
                bind("x", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["1"], "{r:?}");

        // Close, then the name is gone; B's statement with the same text is not.
        let r = a.batch(&[close(b'S', "s1"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "{r:?}");
        let r = b.batch(&[bind("x", &[]), execute(), sync()]).await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("2DCZ", vec!["1".to_string()]),
            "{r:?}"
        );

        // The name reused for another query returns the new query's results.
        let r = a
            .batch(&[
                parse("s1", "SELECT 'two'::text", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DCZ", vec!["two".to_string()]),
            "{r:?}"
        );
        // Close + Parse of the same name + Bind in one batch.
        let r = a
            .batch(&[
                close(b'S', "s1"),
                parse("s1", "SELECT 3", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("312DCZ", vec!["3".to_string()]),
            "{r:?}"
        );
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        // Close of a name that never existed: CloseComplete, no error (as PostgreSQL).
        let r = a.batch(&[close(b'S', "never_prepared"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        // B closes x: A's s1 and B's own later statements are unaffected.
        let r = b.batch(&[close(b'S', "x"), sync()]).await;
        assert_eq!(tags(&r), "3Z", "{r:?}");
        let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        let r = b
            .batch(&[
                parse("x", "SELECT 3", &[]),
                bind("x", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["3"], "{r:?}");
        let r = b.batch(&[bind("x", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["3"], "{r:?}");
    });
}

#[test]
fn parse_of_an_existing_name_is_refused_with_42p05() {
    // As on PostgreSQL: a second Parse under a name in use fails with 42P05
    // ("prepared statement ... already exists") and the first statement stays.
    // Three ways pgsluice may handle that Parse: the text is new to the server
    // (forwarded), already on this server (answered in-line), or already
    // validated and followed by Sync (answered without a server).
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let mut b = Raw::app(&pooler).await;
        // Texts B puts on the (only) server first.
        let r = b
            .batch(&[
                parse("b2", "SELECT 2", &[]),
                parse("b3", "SELECT 3", &[]),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "11Z", "{r:?}");
        let r = a
            .batch(&[
                parse("s1", "SELECT 1", &[]),
                bind("s1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["1"], "{r:?}");
        for (what, msgs) in [
            ("new text", vec![parse("s1", "SELECT 1 + 1", &[]), sync()]),
            (
                "text on the server, then Bind",
                vec![
                    parse("s1", "SELECT 2", &[]),
                    bind("s1", &[]),
                    execute(),
                    sync(),
                ],
            ),
            (
                "text on the server, then Sync",
                vec![parse("s1", "SELECT 3", &[]), sync()],
            ),
            (
                "same text again",
                vec![parse("s1", "SELECT 1", &[]), sync()],
            ),
        ] {
            let r = a.batch(&msgs).await;
            assert_eq!(
                (tags(&r).as_str(), err_code(&r).as_deref()),
                ("EZ", Some("42P05")),
                "Parse of the existing name s1 ({what}): {r:?}"
            );
            let r = a.batch(&[bind("s1", &[]), execute(), sync()]).await;
            assert_eq!(
                data(&r),
                ["1"],
                "s1 after the refused Parse ({what}): {r:?}"
            );
        }
    });
}

#[test]
fn messages_after_an_error_in_the_same_batch_are_skipped() {
    // After an error, PostgreSQL ignores everything up to Sync: a Parse there
    // creates no statement and a Close closes nothing, even when pgsluice could
    // answer them itself (text already on the server, Close of a client name).
    // Every case is checked; the failures are reported together.
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let mut problems: Vec<String> = Vec::new();
        for name in ["k1", "k5"] {
            let r = a
                .batch(&[
                    parse(name, "SELECT 11", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["11"], "{r:?}");
        }

        // The error from a Bind of an unknown name.
        let r = a
            .batch(&[
                bind("nope", &[]),
                execute(),
                parse("k2", "SELECT 11", &[]), // text already on the server
                parse("k3", "SELECT 12", &[]), // new text
                close(b'S', "k1"),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("EZ", Some("26000")),
            "{r:?}"
        );
        for (name, what) in [("k2", "text already on the server"), ("k3", "new text")] {
            let r = a.batch(&[bind(name, &[]), execute(), sync()]).await;
            if err_code(&r).as_deref() != Some("26000") {
                problems.push(format!(
                    "Parse {name} ({what}) after the error created a statement: Bind {name} gave {r:?}"
                ));
            }
        }
        let r = a.batch(&[bind("k1", &[]), execute(), sync()]).await;
        if data(&r) != ["11"] {
            problems.push(format!(
                "Close k1 after the error closed it: Bind k1 gave {r:?}"
            ));
        }

        // The error from an Execute (division by zero, not folded at Bind: random()
        // is volatile): what came before it stays.
        let r = a
            .batch(&[
                parse("z", "SELECT 1 / ($1::int + 0 * random()::int)", &[]),
                bind("z", &["0"]),
                execute(),
                parse("k4", "SELECT 11", &[]),
                close(b'S', "k5"),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), err_code(&r).as_deref()),
            ("12EZ", Some("22012")),
            "{r:?}"
        );
        let r = a.batch(&[bind("z", &["4"]), execute(), sync()]).await;
        if data(&r) != ["0"] {
            problems.push(format!("z, parsed before the error, is gone: {r:?}"));
        }
        let r = a.batch(&[bind("k4", &[]), execute(), sync()]).await;
        if err_code(&r).as_deref() != Some("26000") {
            problems.push(format!(
                "Parse k4 (text on the server) after an Execute error created a statement: {r:?}"
            ));
        }
        let r = a.batch(&[bind("k5", &[]), execute(), sync()]).await;
        if data(&r) != ["11"] {
            problems.push(format!("Close k5 after an Execute error closed it: {r:?}"));
        }
        assert!(
            problems.is_empty(),
            "unlike PostgreSQL:\n{}",
            problems.join("\n")
        );
    });
}

#[test]
fn sql_deallocate_of_a_protocol_level_statement() {
    // As on PostgreSQL, SQL DEALLOCATE removes a statement made by a protocol
    // Parse (the client's own name; others' statements of the same text stay).
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let mut b = Raw::app(&pooler).await;
        for c in [&mut a, &mut b] {
            let r = c
                .batch(&[
                    parse("d1", "SELECT 21", &[]),
                    bind("d1", &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["21"], "{r:?}");
        }
        let r = a.batch(&[query_msg("DEALLOCATE d1")]).await;
        assert!(
            err_code(&r).is_none(),
            "DEALLOCATE d1 of A's protocol-level statement: {r:?}"
        );
        let r = a.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(
            err_code(&r).as_deref(),
            Some("26000"),
            "A's d1 after DEALLOCATE: {r:?}"
        );
        let r = b.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(data(&r), ["21"], "B's d1 after A's DEALLOCATE: {r:?}");
        let r = a
            .batch(&[
                parse("d1", "SELECT 22", &[]),
                bind("d1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(data(&r), ["22"], "{r:?}");
        // DEALLOCATE PREPARE <name> is the same command.
        let r = b.batch(&[query_msg("DEALLOCATE PREPARE d1")]).await;
        assert!(err_code(&r).is_none(), "{r:?}");
        let r = b.batch(&[bind("d1", &[]), execute(), sync()]).await;
        assert_eq!(err_code(&r).as_deref(), Some("26000"), "B's d1: {r:?}");
    });
}

#[test]
fn describe_gives_parameter_types() {
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(60, async {
        let (a, _) = pg_connect(&app_url(&pooler)).await;
        let (b, _) = pg_connect(&app_url(&pooler)).await;
        let s = a
            .prepare("SELECT $1::int8, $2::text, $3::bool, $4::numeric")
            .await
            .unwrap();
        assert_eq!(
            s.params(),
            [Type::INT8, Type::TEXT, Type::BOOL, Type::NUMERIC]
        );
        let cols: Vec<Type> = s.columns().iter().map(|c| c.type_().clone()).collect();
        assert_eq!(cols, [Type::INT8, Type::TEXT, Type::BOOL, Type::NUMERIC]);

        // Same text, different declared types: different statements.
        let s4 = a.prepare_typed("SELECT $1", &[Type::INT4]).await.unwrap();
        let st = a.prepare_typed("SELECT $1", &[Type::TEXT]).await.unwrap();
        let s8 = b.prepare_typed("SELECT $1", &[Type::INT8]).await.unwrap();
        let su = b.prepare("SELECT $1::int2").await.unwrap();
        assert_eq!(s4.params(), [Type::INT4]);
        assert_eq!(st.params(), [Type::TEXT]);
        assert_eq!(s8.params(), [Type::INT8]);
        assert_eq!(su.params(), [Type::INT2]);
        assert_eq!(s4.columns()[0].type_(), &Type::INT4);
        assert_eq!(st.columns()[0].type_(), &Type::TEXT);
        assert_eq!(s8.columns()[0].type_(), &Type::INT8);
        for i in 0..10 {
            let (x, y) = (i * 3, format!("v{i}"));
            let got: i32 = a.query_one(&s4, &[&x]).await.unwrap().get(0);
            assert_eq!(got, x);
            let got: String = a.query_one(&st, &[&y]).await.unwrap().get(0);
            assert_eq!(got, y);
            let got: i64 = b
                .query_one(&s8, &[&(x as i64 * 1_000_000_000)])
                .await
                .unwrap()
                .get(0);
            assert_eq!(got, x as i64 * 1_000_000_000);
            let got: i16 = b.query_one(&su, &[&(i as i16)]).await.unwrap().get(0);
            assert_eq!(got, i as i16);
        }
        // tokio-postgres reports a failed prepare as the server's error.
        let e = a.prepare("SELEC 1").await.unwrap_err();
        assert_eq!(sqlstate(&e), "42601");
        assert_eq!(sq1(&a, "SELECT 'still fine'").await, "still fine");
    });
}

#[test]
fn bind_and_describe_on_a_server_lacking_the_statement() {
    // Pool of 2, and two other clients holding transactions to steer which
    // server raw client B gets.
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (c, _) = pg_connect(&url).await;
        let (d, _) = pg_connect(&url).await;
        sq(&c, "BEGIN").await;
        let pid_c = sq1(&c, "SELECT pg_backend_pid()").await;

        // B prepares d1 and d2 on the other server (the only one free).
        let mut b = Raw::app(&pooler).await;
        let r = b
            .batch(&[
                parse("d1", "SELECT pg_backend_pid(), $1::int4 + 1 AS next", &[]),
                describe(b'S', "d1"),
                parse("d2", "SELECT $1::text || '!', pg_backend_pid()", &[25]),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "1tT1Z", "{r:?}");
        assert_eq!(r[1].param_oids(), [23]);
        let r = b.batch(&[bind("d1", &["5"]), execute(), sync()]).await;
        assert_eq!(tags(&r), "2DCZ", "{r:?}");
        let row = r[1].columns();
        let pid_b = row[0].clone();
        assert_eq!(row[1], "6");
        assert_ne!(
            pid_b, pid_c,
            "B ran on C's server while C was in a transaction"
        );

        // D takes that server; C's ends: B's next transactions run on C's old
        // server, which has never seen d1 or d2.
        sq(&d, "BEGIN").await;
        assert_eq!(sq1(&d, "SELECT pg_backend_pid()").await, pid_b);
        sq(&c, "COMMIT").await;

        // Describe: exactly ParameterDescription + RowDescription (no extra ParseComplete).
        let r = b.batch(&[describe(b'S', "d1"), sync()]).await;
        assert_eq!(tags(&r), "tTZ", "{r:?}");
        assert_eq!(r[0].param_oids(), [23]);
        let r = b.batch(&[bind("d1", &["41"]), execute(), sync()]).await;
        assert_eq!(tags(&r), "2DCZ", "{r:?}");
        assert_eq!(r[1].columns(), [pid_c.clone(), "42".to_string()]);
        // Bind first (no Describe before it) of d2 there.
        let r = b
            .batch(&[bind("d2", &["hey"]), describe(b'P', ""), execute(), sync()])
            .await;
        assert_eq!(tags(&r), "2TDCZ", "{r:?}");
        assert_eq!(r[2].columns(), ["hey!".to_string(), pid_c.clone()]);
        sq(&d, "COMMIT").await;

        // And many times over, wherever B lands.
        for i in 0..20 {
            let r = b
                .batch(&[
                    bind("d1", &[&i.to_string()]),
                    execute(),
                    bind("d2", &["z"]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(tags(&r), "2DC2DCZ", "{r:?}");
            assert_eq!(r[1].columns()[1], (i + 1).to_string());
            assert_eq!(r[4].columns()[0], "z!");
        }
    });
}

#[test]
fn unnamed_statements_in_one_sync_batch() {
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let r = a
            .batch(&[
                parse("", "SELECT 1::int", &[]),
                bind("", &[]),
                execute(),
                parse("", "SELECT 'b'::text", &[]),
                bind("", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(
            (tags(&r).as_str(), data(&r)),
            ("12DC12DCZ", vec![String::from("1"), String::from("b")]),
            "{r:?}"
        );
        // Unnamed, named and unnamed again, with a Describe and a rebind of the named one.
        let r = a
            .batch(&[
                parse("", "SELECT 10", &[]),
                describe(b'S', ""),
                bind("", &[]),
                execute(),
                parse("n1", "SELECT 20", &[]),
                bind("n1", &[]),
                execute(),
                parse("", "SELECT $1::int + 1", &[23]),
                bind("", &["29"]),
                execute(),
                bind("n1", &[]),
                execute(),
                sync(),
            ])
            .await;
        assert_eq!(tags(&r), "1tT2DC12DC12DC2DCZ", "{r:?}");
        assert_eq!(data(&r), ["10", "20", "30", "20"]);
        // Another client doing the same at the same time on the other server.
        let mut b = Raw::app(&pooler).await;
        for i in 0..10 {
            let q1 = format!("SELECT {i}");
            let q2 = format!("SELECT {}", i * 2);
            let batch = [
                parse("", &q1, &[]),
                bind("", &[]),
                execute(),
                parse("", &q2, &[]),
                bind("", &[]),
                execute(),
                sync(),
            ];
            let (ra, rb) = tokio::join!(a.batch(&batch), b.batch(&batch));
            assert_eq!(data(&ra), [i.to_string(), (i * 2).to_string()], "{ra:?}");
            assert_eq!(data(&rb), [i.to_string(), (i * 2).to_string()], "{rb:?}");
        }
    });
}

/// Raw client `t`: named statements p1..p3 whose queries depend on `t` (so
/// the same names mean different queries on different clients), first in one
/// pipelined Parse/Bind/Execute×3 + Sync write, then rounds of three Syncs in
/// one write.
async fn pipelined_client(port: u16, t: i64) -> Result<(), String> {
    let mut a = Raw::connect(port, "app", "app_pw", "app").await;
    let mut rng = StdRng::seed_from_u64(0xb1b0 + t as u64);
    let q1 = format!("SELECT $1::int8 + {t}");
    let q2 = format!("SELECT $1::text || '-{t}'");
    let q3 = format!("SELECT $1::int8 * {}", t + 2);
    let r = a
        .batch(&[
            parse("p1", &q1, &[]),
            bind("p1", &["1"]),
            execute(),
            parse("p2", &q2, &[]),
            bind("p2", &["a"]),
            execute(),
            parse("p3", &q3, &[]),
            bind("p3", &["21"]),
            execute(),
            sync(),
        ])
        .await;
    let want = vec![
        (1 + t).to_string(),
        format!("a-{t}"),
        (21 * (t + 2)).to_string(),
    ];
    if tags(&r) != "12DC12DC12DCZ" || data(&r) != want {
        return Err(format!("client {t}: first batch {r:?}, want rows {want:?}"));
    }
    for round in 0..20 {
        let x: i64 = rng.gen_range(-1_000_000..1_000_000);
        let s = format!("r{round}");
        let xs = x.to_string();
        a.send(
            &[
                bind("p1", &[&xs]),
                execute(),
                sync(),
                bind("p2", &[&s]),
                execute(),
                sync(),
                bind("p3", &[&xs]),
                execute(),
                sync(),
            ]
            .concat(),
        )
        .await;
        let wants = [
            (x + t).to_string(),
            format!("{s}-{t}"),
            (x * (t + 2)).to_string(),
        ];
        for want in wants {
            let r = a.until_ready().await;
            if tags(&r) != "2DCZ" || data(&r) != [want.clone()] {
                return Err(format!("client {t} round {round}: {r:?}, want {want:?}"));
            }
        }
        // Every few rounds, one more pipelined batch of all three in one Sync.
        if round % 4 == 3 {
            let r = a
                .batch(&[
                    bind("p3", &["1"]),
                    execute(),
                    bind("p1", &["1"]),
                    execute(),
                    bind("p2", &["q"]),
                    execute(),
                    sync(),
                ])
                .await;
            let want = vec![(t + 2).to_string(), (1 + t).to_string(), format!("q-{t}")];
            if tags(&r) != "2DC2DC2DCZ" || data(&r) != want {
                return Err(format!(
                    "client {t} round {round} batch: {r:?}, want {want:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn pipelined_named_batches_same_names_different_queries() {
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(120, async {
        let handles = (0..8i64)
            .map(|t| tokio::spawn(pipelined_client(pooler.port, t)))
            .collect();
        join_all("pipelined raw clients", handles).await;
    });
}

// ------------------------------------------------------------------ 7. sharing

#[test]
fn same_query_from_10_clients_is_prepared_once_per_server() {
    const Q: &str = "SELECT $1::int + 1000";
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let mut clients = Vec::new();
        for i in 0..10 {
            let (c, _) = pg_connect(&url).await;
            let s = c.prepare(Q).await.unwrap();
            let got: i32 = c.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i + 1000);
            clients.push((c, s));
        }
        // Five more with a declared int8 parameter: another server-side statement.
        for i in 0..5i64 {
            let (c, _) = pg_connect(&url).await;
            let s = c.prepare_typed(Q, &[Type::INT8]).await.unwrap();
            assert_eq!(s.params(), [Type::INT8]);
            let got: i32 = c.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i as i32 + 1000);
            clients.push((c, s));
        }
        // All still usable.
        for (i, (c, s)) in clients.iter().enumerate() {
            let x = i as i32;
            let got: i32 = if s.params()[0] == Type::INT8 {
                c.query_one(s, &[&(x as i64)]).await.unwrap().get(0)
            } else {
                c.query_one(s, &[&x]).await.unwrap().get(0)
            };
            assert_eq!(got, x + 1000);
        }
        let (check, _) = pg_connect(&url).await;
        let rows = sq(
            &check,
            &format!(
                "SELECT name || ' ' || parameter_types::text FROM pg_prepared_statements \
                 WHERE statement = '{Q}' ORDER BY parameter_types::text"
            ),
        )
        .await;
        assert_eq!(
            rows.len(),
            2,
            "want one int4 and one int8 statement on the server: {rows:?}"
        );
        assert!(
            rows[0].ends_with(" {bigint}") && rows[1].ends_with(" {integer}"),
            "{rows:?}"
        );
        assert!(rows.iter().all(|r| r.starts_with("sluice_")), "{rows:?}");
        // Nothing else under the drivers' own names.
        assert_eq!(
            sq1(
                &check,
                "SELECT count(*) FROM pg_prepared_statements WHERE name NOT LIKE 'sluice\\_%'"
            )
            .await,
            "0"
        );
        drop(clients);
    });
}

// ------------------------------------------------------------------ 8. SQL PREPARE / EXECUTE

#[test]
fn sql_prepare_same_name_different_queries_two_clients() {
    let (_cluster, pooler) = setup("transaction", 2, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        sq(&a, "PREPARE q AS SELECT 1").await;
        sq(&b, "PREPARE q AS SELECT 2").await;
        sq(&a, "PREPARE q2(int) AS SELECT $1 + 100").await;
        sq(&b, "PREPARE q2(int) AS SELECT $1 * 100").await;
        for i in 0..10 {
            assert_eq!(sq1(&a, "EXECUTE q").await, "1");
            assert_eq!(sq1(&b, "EXECUTE q").await, "2");
            assert_eq!(
                sq1(&b, &format!("EXECUTE q2({i})")).await,
                (i * 100).to_string()
            );
            assert_eq!(
                sq1(&a, &format!("EXECUTE q2({i})")).await,
                (i + 100).to_string()
            );
        }
        // Inside transactions too.
        sq(&a, "BEGIN").await;
        sq(&b, "BEGIN").await;
        assert_eq!(sq1(&a, "EXECUTE q").await, "1");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        sq(&a, "COMMIT").await;
        sq(&b, "COMMIT").await;
        // DEALLOCATE by one client: its q is gone, the other's is not.
        sq(&a, "DEALLOCATE q").await;
        let e = a.simple_query("EXECUTE q").await.unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        sq(&a, "PREPARE q AS SELECT 3").await;
        assert_eq!(sq1(&a, "EXECUTE q").await, "3");
        assert_eq!(sq1(&b, "EXECUTE q").await, "2");
        assert_eq!(sq1(&a, "EXECUTE q2(7)").await, "107");
        assert_eq!(sq1(&b, "EXECUTE q2(7)").await, "700");
    });
}

/// SQL PREPARE no longer pins: on a pool of ONE server, two clients preparing the same
/// names for different queries take turns on it, each EXECUTE finding its own statement
/// (prepared on demand, hidden from the client), and the server holds one shared
/// statement per distinct text.
#[test]
fn sql_prepare_is_mapped_not_pinned_on_a_pool_of_one() {
    let (_cluster, pooler) = setup("transaction", 1, "query_wait_timeout = 5");
    run_async(120, async {
        let url = app_url(&pooler);
        let clients: Vec<_> = futures_util::future::join_all((0..4).map(|_| pg_connect(&url)))
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        for (k, c) in clients.iter().enumerate() {
            sq(c, &format!("PREPARE q (int) AS SELECT $1 * {}", k + 1)).await;
            sq(c, "PREPARE same AS SELECT 'shared'").await;
        }
        for i in 0..50 {
            for (k, c) in clients.iter().enumerate() {
                assert_eq!(
                    sq1(c, &format!("EXECUTE q({i})")).await,
                    (i * (k as i32 + 1)).to_string()
                );
                assert_eq!(sq1(c, "EXECUTE same").await, "shared");
            }
        }
        // A transaction holding the only server, then the others again.
        sq(&clients[0], "BEGIN").await;
        assert_eq!(sq1(&clients[0], "EXECUTE q(3)").await, "3");
        sq(&clients[0], "COMMIT").await;
        assert_eq!(sq1(&clients[3], "EXECUTE q(3)").await, "12");
        // A failed PREPARE leaves no name; a client cannot run pgsluice's own names.
        let e = clients[1]
            .simple_query("PREPARE bad AS SELECT * FROM no_such_table")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42P01");
        let e = clients[1].simple_query("EXECUTE bad").await.unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
        let e = clients[1]
            .simple_query("EXECUTE sluice_1")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "26000");
    });
    // pg_prepared_statements shows its own session only: ask through the pooler's server.
    run_async(30, async {
        let (c, _) = pg_connect(&app_url(&pooler)).await;
        let names = sq(&c, "SELECT name FROM pg_prepared_statements ORDER BY name").await;
        assert!(
            names.iter().all(|n| n.starts_with("sluice_")),
            "client names reached the server: {names:?}"
        );
        assert!(
            names.len() <= 6,
            "one statement per distinct text: {names:?}"
        );
    });
}

// ------------------------------------------------------------------ 9. DEALLOCATE ALL / DISCARD ALL

#[test]
fn deallocate_all_and_discard_all_do_not_disturb_other_clients() {
    // Pool of 1: A's commands run on the very server B's statement is on.
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        let sb = b.prepare("SELECT $1::int + 7").await.unwrap();
        let exec_b = |x: i32| {
            let (b, sb) = (&b, &sb);
            async move {
                let got: i32 = b
                    .query_one(sb, &[&x])
                    .await
                    .unwrap_or_else(|e| {
                        panic!("B's statement after A's command: {e} ({})", sqlstate(&e))
                    })
                    .get(0);
                assert_eq!(got, x + 7);
            }
        };
        exec_b(1).await;
        let sa = a.prepare("SELECT $1::int + 7").await.unwrap(); // same text: shared server-side
        let _: i32 = a.query_one(&sa, &[&1]).await.unwrap().get(0);

        sq(&a, "DEALLOCATE ALL").await;
        exec_b(2).await;
        sq(&a, "DISCARD ALL").await;
        exec_b(3).await;
        sq(&a, "BEGIN").await;
        sq(&a, "DEALLOCATE ALL").await;
        sq(&a, "COMMIT").await;
        exec_b(4).await;
        // A can prepare and use statements again afterwards.
        let sa2 = a.prepare("SELECT $1::int + 7").await.unwrap();
        let got: i32 = a.query_one(&sa2, &[&10]).await.unwrap().get(0);
        assert_eq!(got, 17);
        sq(&a, "DISCARD ALL").await;
        exec_b(5).await;
        let sa3 = a.prepare("SELECT $1::text").await.unwrap();
        let got: String = a.query_one(&sa3, &[&"x"]).await.unwrap().get(0);
        assert_eq!(got, "x");
        exec_b(6).await;
    });
}

#[test]
fn deallocate_all_drops_the_clients_own_protocol_statements() {
    // As on PostgreSQL: DEALLOCATE ALL / DISCARD ALL remove the session's
    // protocol-level statements too (the client's own names only).
    let (_cluster, pooler) = setup("transaction", 1, "");
    run_async(60, async {
        let mut a = Raw::app(&pooler).await;
        let mut b = Raw::app(&pooler).await;
        for (cmd, name) in [("DEALLOCATE ALL", "pa"), ("DISCARD ALL", "pb")] {
            let r = a
                .batch(&[
                    parse(name, "SELECT 5", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["5"], "{r:?}");
            let r = b
                .batch(&[
                    parse(name, "SELECT 5", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["5"], "{r:?}");
            let r = a.batch(&[query_msg(cmd)]).await;
            assert!(err_code(&r).is_none(), "{cmd}: {r:?}");
            let r = a.batch(&[bind(name, &[]), execute(), sync()]).await;
            assert_eq!(
                err_code(&r).as_deref(),
                Some("26000"),
                "A's {name} after its own {cmd}: {r:?}"
            );
            let r = b.batch(&[bind(name, &[]), execute(), sync()]).await;
            assert_eq!(data(&r), ["5"], "B's {name} after A's {cmd}: {r:?}");
            // A may reuse the name at once.
            let r = a
                .batch(&[
                    parse(name, "SELECT 6", &[]),
                    bind(name, &[]),
                    execute(),
                    sync(),
                ])
                .await;
            assert_eq!(data(&r), ["6"], "{r:?}");
        }
    });
}

// ------------------------------------------------------------------ max_prepared_statements = 0

#[test]
fn max_prepared_statements_zero_pins_like_before() {
    let (_cluster, pooler) = setup("transaction", 2, "max_prepared_statements = 0");
    run_async(60, async {
        let url = app_url(&pooler);
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        let s = a.prepare("SELECT $1::int * 5").await.unwrap();
        let pid_a = sq1(&a, "SELECT pg_backend_pid()").await;
        for i in 0..20 {
            let got: i32 = a.query_one(&s, &[&i]).await.unwrap().get(0);
            assert_eq!(got, i * 5);
            assert_eq!(sq1(&b, &format!("SELECT {i}")).await, i.to_string());
            assert_eq!(
                sq1(&a, "SELECT pg_backend_pid()").await,
                pid_a,
                "A was not pinned"
            );
            assert_ne!(
                sq1(&b, "SELECT pg_backend_pid()").await,
                pid_a,
                "B got A's pinned server"
            );
        }
    });
}
