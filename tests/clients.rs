//! Real clients through pgsluice: psql (every pool mode × client auth × server
//! auth), pgbench, tokio-postgres (simple and extended queries, transactions,
//! pipelining, notices, parameter status), 500 concurrent clients on a pool of
//! 10, session-state isolation (SET leaks), pinning, and session-mode reset.
//!
//! Every test starts its own cluster (~0.5 s) and pgsluice, so tests run in
//! parallel under cargo test and nextest alike. Where a query ran is always
//! asked of the server (`pg_backend_pid()`), never taken from pgsluice's logs.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::{Cluster, Pooler, pg_connect, pg_connect_config, psql, psql_ok, run_async, sq, sq1};
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client};

/// A fresh cluster (no replicas) and a pgsluice in front of it.
fn setup(mode: &str, auth: &str, pool_size: u32) -> (Cluster, Pooler) {
    let cluster = Cluster::start(0);
    let pooler = Pooler::start(&cluster.pooler_config(mode, auth, pool_size));
    (cluster, pooler)
}

/// URL of database app on pgsluice as app/app_pw.
fn app_url(p: &Pooler) -> String {
    p.url("app", "app_pw", "app")
}

/// Superuser tokio-postgres connection straight to the primary (for checks).
async fn admin(c: &Cluster) -> Client {
    pg_connect(&c.node_url("primary", "postgres", "", "app"))
        .await
        .0
}

async fn pid(client: &Client) -> i32 {
    sq1(client, "SELECT pg_backend_pid()")
        .await
        .parse()
        .expect("pid")
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

// ------------------------------------------------------------------ psql × auth

fn psql_auth_matrix(mode: &str) {
    let cluster = Cluster::start(0);
    for auth in ["trust", "md5", "scram-sha-256"] {
        let pooler = Pooler::start(&cluster.pooler_config(mode, auth, 2));
        // app: SCRAM on the server; md5user: md5; plainuser: cleartext password.
        for (user, pw) in [
            ("app", "app_pw"),
            ("md5user", "md5_pw"),
            ("plainuser", "plain_pw"),
        ] {
            let got = psql_ok(&pooler.url(user, pw, "app"), "SELECT current_user");
            assert_eq!(got, user, "mode {mode}, client auth {auth}, user {user}");
            // The session really works past login: a second statement in the same psql.
            let got = psql_ok(
                &pooler.url(user, pw, "app"),
                "SELECT 1; SELECT current_user || '/' || current_database()",
            );
            assert_eq!(
                got,
                format!("1\n{user}/app"),
                "mode {mode}, auth {auth}, user {user}"
            );
            if auth != "trust" {
                let out = psql(&pooler.url(user, "wrong_pw", "app"), "SELECT 1");
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    !out.status.success() && stderr.contains("password authentication failed"),
                    "mode {mode}, auth {auth}: {user} with a wrong password: {} {stderr}",
                    out.status
                );
            }
        }
    }
}

#[test]
fn psql_auth_session_mode() {
    psql_auth_matrix("session");
}

#[test]
fn psql_auth_transaction_mode() {
    psql_auth_matrix("transaction");
}

#[test]
fn psql_auth_statement_mode() {
    psql_auth_matrix("statement");
}

// ------------------------------------------------------------------ pgbench

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

/// Runs `pgbench -n -S -M proto -c 10 -j 2 -T 3` through pgsluice and checks its report.
fn pgbench_through(mode: &str, proto: &str) {
    // Session mode: one server per client for its whole session, so 10 of them.
    let pool_size = if mode == "session" { 10 } else { 5 };
    let (cluster, pooler) = setup(mode, "scram-sha-256", pool_size);
    pgbench_init(&cluster);
    let out = Command::new("timeout")
        .args(["-k", "5", "60", "pgbench", "-n", "-S", "-M", proto])
        .args(["-c", "10", "-j", "2", "-T", "3", "-h", "127.0.0.1"])
        .args(["-p", &pooler.port.to_string(), "-U", "app", "app"])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!(
        "mode {mode}, -M {proto}: {}\n{stdout}\n{stderr}",
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
    assert!(field("tps =") > 0.0, "{report}");
    assert!(!stderr.contains("error"), "{report}");
}

#[test]
fn pgbench_simple_transaction_mode() {
    pgbench_through("transaction", "simple");
}

#[test]
fn pgbench_extended_transaction_mode() {
    pgbench_through("transaction", "extended");
}

#[test]
fn pgbench_simple_statement_mode() {
    pgbench_through("statement", "simple");
}

#[test]
fn pgbench_extended_statement_mode() {
    pgbench_through("statement", "extended");
}

#[test]
fn pgbench_prepared_session_mode() {
    pgbench_through("session", "prepared");
}

// ------------------------------------------------------------------ tokio-postgres

async fn tokio_postgres_features(mode: &str, cluster: &Cluster, pooler: &Pooler) {
    let adm = admin(cluster).await;
    adm.batch_execute("CREATE TABLE kv (k int PRIMARY KEY, v text); ALTER TABLE kv OWNER TO app")
        .await
        .unwrap();
    let (client, mut msgs) = pg_connect(&app_url(pooler)).await;

    // Simple query, several statements in one Query.
    let rows = sq(&client, "SELECT 1; SELECT 'two'; SELECT current_user").await;
    assert_eq!(rows, ["1", "two", "app"], "mode {mode}");

    // Extended query with typed parameters (unnamed statement).
    let rows = client
        .query_typed(
            "SELECT $1::int + $2::int, $3::text || 'x'",
            &[
                (&40i32, Type::INT4),
                (&2i32, Type::INT4),
                (&"ab", Type::TEXT),
            ],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 42);
    assert_eq!(rows[0].get::<_, String>(1), "abx");

    // An error, then the connection still works.
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&err), "22012", "mode {mode}");
    let err = client
        .query_typed("SELECT $1::int / 0", &[(&1i32, Type::INT4)])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22012", "mode {mode}");
    assert_eq!(sq1(&client, "SELECT 'still alive'").await, "still alive");

    // A pipelined burst: 12 extended queries in flight at once on one client.
    let burst = (0..12i32).map(|i| {
        let client = &client;
        async move {
            let rows = client
                .query_typed(
                    "SELECT $1::int * 10, $2::text",
                    &[(&i, Type::INT4), (&format!("n{i}"), Type::TEXT)],
                )
                .await
                .unwrap_or_else(|e| panic!("burst query {i}: {e}"));
            (rows[0].get::<_, i32>(0), rows[0].get::<_, String>(1))
        }
    });
    let got = futures_util::future::join_all(burst).await;
    for (i, (n, s)) in got.into_iter().enumerate() {
        assert_eq!((n, s), (i as i32 * 10, format!("n{i}")), "mode {mode}");
    }

    // NOTICE arrives as an async message.
    sq(&client, "DO $$BEGIN RAISE NOTICE 'hi'; END$$").await;
    let notice = tokio::time::timeout(Duration::from_secs(5), msgs.recv())
        .await
        .unwrap_or_else(|_| panic!("mode {mode}: no NOTICE within 5 s"));
    match notice {
        Some(AsyncMessage::Notice(n)) => assert_eq!(n.message(), "hi"),
        other => panic!("mode {mode}: expected a notice, got {other:?}"),
    }

    // SET application_name sticks for this client (also with another client in between).
    sq(&client, "SET application_name = 'x'").await;
    let (other, _) = pg_connect(&app_url(pooler)).await;
    assert_eq!(
        sq1(&other, "SHOW application_name").await,
        "",
        "mode {mode}: SET leaked"
    );
    assert_eq!(
        sq1(&client, "SHOW application_name").await,
        "x",
        "mode {mode}"
    );
    let rows = client
        .query_typed("SHOW application_name", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "x", "mode {mode}");

    if mode == "statement" {
        // Transaction blocks are refused in statement mode (a clear error, no hang).
        let err = client.simple_query("BEGIN").await.unwrap_err();
        assert_eq!(sqlstate(&err), "0A000", "statement mode BEGIN: {err}");
        return;
    }

    // BEGIN/COMMIT via simple queries: one server for the whole transaction.
    sq(&client, "BEGIN").await;
    let p1 = pid(&client).await;
    client
        .query_typed(
            "INSERT INTO kv VALUES ($1, $2)",
            &[(&1i32, Type::INT4), (&"one", Type::TEXT)],
        )
        .await
        .unwrap();
    assert_eq!(sq1(&client, "SELECT v FROM kv WHERE k = 1").await, "one");
    let (other2, _) = pg_connect(&app_url(pooler)).await;
    assert_eq!(
        sq(&other2, "SELECT v FROM kv WHERE k = 1").await.len(),
        0,
        "uncommitted row visible"
    );
    assert_eq!(
        pid(&client).await,
        p1,
        "mode {mode}: transaction moved servers"
    );
    sq(&client, "COMMIT").await;
    assert_eq!(sq1(&adm, "SELECT v FROM kv WHERE k = 1").await, "one");

    sq(&client, "BEGIN").await;
    sq(&client, "INSERT INTO kv VALUES (2, 'two')").await;
    sq(&client, "ROLLBACK").await;
    assert_eq!(sq1(&adm, "SELECT count(*) FROM kv WHERE k = 2").await, "0");

    // An error inside a transaction: the block stays aborted until ROLLBACK.
    sq(&client, "BEGIN").await;
    assert!(client.simple_query("SELECT 1/0").await.is_err());
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02", "mode {mode}");
    sq(&client, "ROLLBACK").await;
    assert_eq!(sq1(&client, "SELECT 3").await, "3");

    if mode == "session" {
        // client.transaction() (with named prepared statements: fine in session mode).
        let mut client = client;
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO kv VALUES ($1, $2)", &[&3i32, &"three"])
            .await
            .unwrap();
        let v: String = tx
            .query_one("SELECT v FROM kv WHERE k = $1", &[&3i32])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, "three");
        tx.commit().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO kv VALUES ($1, $2)", &[&4i32, &"four"])
            .await
            .unwrap();
        drop(tx); // rolls back
        let n: i64 = client
            .query_one("SELECT count(*) FROM kv WHERE k IN (3, 4)", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        assert_eq!(
            sq1(&adm, "SELECT string_agg(v, ',' ORDER BY k) FROM kv").await,
            "one,three"
        );
    }
}

fn tokio_postgres_in(mode: &str) {
    let (cluster, pooler) = setup(mode, "scram-sha-256", 3);
    run_async(60, tokio_postgres_features(mode, &cluster, &pooler));
}

#[test]
fn tokio_postgres_session_mode() {
    tokio_postgres_in("session");
}

#[test]
fn tokio_postgres_transaction_mode() {
    tokio_postgres_in("transaction");
}

#[test]
fn tokio_postgres_statement_mode() {
    tokio_postgres_in("statement");
}

// ------------------------------------------------------------------ 500 clients

/// One of the 500 clients: 20 checked queries, and every fifth one a transaction.
async fn busy_client(url: String, id: i32) -> Result<(), String> {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let (client, mut conn) = tokio::time::timeout(
        Duration::from_secs(30),
        config.connect(tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| format!("client {id}: connect timed out"))?
    .map_err(|e| format!("client {id}: connect: {e}"))?;
    tokio::spawn(async move {
        while let Some(Ok(_)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {}
    });
    for i in 0..20 {
        let n = id * 1000 + i;
        let rows = client
            .query_typed("SELECT $1::int + 1", &[(&n, Type::INT4)])
            .await
            .map_err(|e| format!("client {id} query {i}: {e}"))?;
        let got: i32 = rows.first().ok_or("no row")?.get(0);
        if got != n + 1 {
            return Err(format!("client {id}: SELECT {n} + 1 returned {got}"));
        }
        if id % 5 == 0 && i == 10 {
            let err = |e: tokio_postgres::Error| format!("client {id} transaction: {e}");
            client.simple_query("BEGIN").await.map_err(err)?;
            let p1: i32 = client
                .query_typed("SELECT pg_backend_pid()", &[])
                .await
                .map_err(err)?[0]
                .get(0);
            client
                .query_typed("INSERT INTO t500 VALUES ($1)", &[(&id, Type::INT4)])
                .await
                .map_err(err)?;
            let rows = client
                .query_typed(
                    "SELECT count(*), max(pg_backend_pid()) FROM t500 WHERE id = $1",
                    &[(&id, Type::INT4)],
                )
                .await
                .map_err(err)?;
            let (count, p2): (i64, i32) = (rows[0].get(0), rows[0].get(1));
            if count != 1 || p1 != p2 {
                return Err(format!(
                    "client {id}: in-transaction count {count}, pids {p1} vs {p2}"
                ));
            }
            client.simple_query("COMMIT").await.map_err(err)?;
        }
    }
    Ok(())
}

#[test]
fn five_hundred_clients_share_pool_of_ten() {
    let (cluster, pooler) = setup("transaction", "scram-sha-256", 10);
    psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE t500 (id int)",
    );
    run_async(120, async {
        let adm = admin(&cluster).await;
        // Sample the number of server connections pgsluice holds, all along.
        let stop = Arc::new(AtomicBool::new(false));
        let max_seen = Arc::new(AtomicI64::new(0));
        let monitor = {
            let (stop, max_seen) = (stop.clone(), max_seen.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n: i64 = adm
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'app' AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    max_seen.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                adm
            })
        };
        let url = app_url(&pooler);
        let tasks: Vec<_> = (0..500)
            .map(|id| tokio::spawn(busy_client(url.clone(), id)))
            .collect();
        let mut errors = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.expect("client task panicked") {
                errors.push(e);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let adm = monitor.await.unwrap();
        assert!(
            errors.is_empty(),
            "{} of 500 clients failed, e.g.: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert_eq!(
            sq1(
                &adm,
                "SELECT count(DISTINCT id) || '/' || count(*) FROM t500"
            )
            .await,
            "100/100"
        );
        let now: i64 = sq1(
            &adm,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND datname = 'app' AND pid <> pg_backend_pid()",
        )
        .await
        .parse()
        .unwrap();
        let max = max_seen.load(Ordering::Relaxed);
        assert!(max >= 1, "never saw a server connection");
        assert!(
            max <= 10 && now <= 10,
            "pgsluice held {max} server connections (now {now}), pool size 10"
        );
    });
}

// ------------------------------------------------------------------ SET leaks

async fn show_all(client: &Client) -> [String; 4] {
    [
        sq1(client, "SHOW search_path").await,
        sq1(client, "SHOW statement_timeout").await,
        sq1(client, "SHOW application_name").await,
        sq1(client, "SHOW TimeZone").await,
    ]
}

#[test]
fn set_does_not_leak_between_clients_in_transaction_mode() {
    let (cluster, pooler) = setup("transaction", "scram-sha-256", 1);
    psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE SCHEMA a_schema; CREATE TABLE a_schema.only_in_a (x int); INSERT INTO a_schema.only_in_a VALUES (7)",
    );
    run_async(60, async {
        // What a fresh client sees directly on the server.
        let (direct, _) = pg_connect(&cluster.node_url("primary", "app", "app_pw", "app")).await;
        let defaults = show_all(&direct).await;
        assert_ne!(defaults[3], "Pacific/Chatham");

        let mut cfg: tokio_postgres::Config = app_url(&pooler).parse().unwrap();
        cfg.application_name("startA")
            .options("-c statement_timeout=5000");
        let (a, _) = pg_connect_config(&cfg).await;
        let (b, _) = pg_connect(&app_url(&pooler)).await;
        // Pool size 1: both really share one server.
        assert_eq!(pid(&a).await, pid(&b).await, "pool size 1 but two servers");

        let a_start = [
            defaults[0].clone(),
            "5s".into(),
            "startA".into(),
            defaults[3].clone(),
        ];
        assert_eq!(
            show_all(&a).await,
            a_start,
            "A's startup parameters not honoured"
        );
        assert_eq!(show_all(&b).await, defaults, "B at start");

        sq(&a, "SET search_path = a_schema, public").await;
        sq(&a, "SET statement_timeout = '1234ms'").await;
        sq(&a, "SET application_name = 'A'").await;
        sq(&a, "SET TimeZone = 'Pacific/Chatham'").await;
        let a_set: [String; 4] = [
            "a_schema, public".into(),
            "1234ms".into(),
            "A".into(),
            "Pacific/Chatham".into(),
        ];

        for round in 0..3 {
            assert_eq!(
                show_all(&b).await,
                defaults,
                "round {round}: A's SETs leaked to B"
            );
            assert!(
                b.simple_query("SELECT * FROM only_in_a").await.is_err(),
                "B resolved A's search_path"
            );
            assert_eq!(show_all(&a).await, a_set, "round {round}: A lost its SETs");
            assert_eq!(sq1(&a, "SELECT x FROM only_in_a").await, "7");
            // Across an explicit transaction too.
            sq(&a, "BEGIN").await;
            assert_eq!(show_all(&a).await, a_set);
            sq(&a, "COMMIT").await;
            assert_eq!(show_all(&b).await, defaults);
        }

        // Interleaved concurrently: each client checks its own values 30 times.
        let (a, b) = (Arc::new(a), Arc::new(b));
        let ta = {
            let (a, want) = (a.clone(), a_set.clone());
            tokio::spawn(async move {
                for i in 0..30 {
                    assert_eq!(show_all(&a).await, want, "A, iteration {i}");
                }
            })
        };
        let tb = {
            let (b, want) = (b.clone(), defaults.clone());
            tokio::spawn(async move {
                for i in 0..30 {
                    assert_eq!(show_all(&b).await, want, "B, iteration {i}");
                }
            })
        };
        ta.await.unwrap();
        tb.await.unwrap();

        // A SET in a rolled-back transaction does not stick.
        sq(&a, "BEGIN").await;
        sq(&a, "SET search_path = public").await;
        assert_eq!(sq1(&a, "SHOW search_path").await, "public");
        sq(&a, "ROLLBACK").await;
        assert_eq!(sq1(&a, "SHOW search_path").await, "a_schema, public");
        assert_eq!(show_all(&b).await, defaults); // the server goes back to B's settings...
        assert_eq!(
            show_all(&a).await,
            a_set,
            "SET from a rolled-back transaction was replayed"
        );

        // ... nor does SET LOCAL.
        sq(&a, "BEGIN").await;
        sq(&a, "SET LOCAL search_path = public").await;
        sq(&a, "SET LOCAL statement_timeout = '99ms'").await;
        assert_eq!(sq1(&a, "SHOW search_path").await, "public");
        sq(&a, "COMMIT").await;
        assert_eq!(show_all(&b).await, defaults);
        assert_eq!(
            show_all(&a).await,
            a_set,
            "SET LOCAL was replayed as a session SET"
        );

        // A SET that failed does not stick either.
        assert!(
            a.simple_query("SET statement_timeout = 'banana'")
                .await
                .is_err()
        );
        assert_eq!(show_all(&b).await, defaults);
        assert_eq!(show_all(&a).await, a_set);

        // RESET returns to A's startup value, RESET ALL to all of them.
        sq(&a, "RESET application_name").await;
        assert_eq!(show_all(&b).await, defaults);
        assert_eq!(
            show_all(&a).await,
            ["a_schema, public", "1234ms", "startA", "Pacific/Chatham"].map(String::from),
            "RESET application_name"
        );
        sq(&a, "SET application_name = 'A2'").await;
        sq(&a, "RESET ALL").await;
        assert_eq!(show_all(&b).await, defaults);
        assert_eq!(
            show_all(&a).await,
            a_start,
            "RESET ALL did not restore A's startup values"
        );

        // A startup option is honoured through the pool (as the server itself shows
        // it), and doesn't leak either: one schema, then a list.
        for opt in ["-c search_path=c_schema", "-c search_path=c_schema,public"] {
            let mut direct_cfg: tokio_postgres::Config = cluster
                .node_url("primary", "app", "app_pw", "app")
                .parse()
                .unwrap();
            direct_cfg.options(opt);
            let want = sq1(&pg_connect_config(&direct_cfg).await.0, "SHOW search_path").await;
            let mut cfg: tokio_postgres::Config = app_url(&pooler).parse().unwrap();
            cfg.options(opt);
            let (c, _) = pg_connect_config(&cfg).await;
            for _ in 0..2 {
                assert_eq!(
                    sq1(&c, "SHOW search_path").await,
                    want,
                    "startup option {opt:?}"
                );
                assert_eq!(show_all(&b).await, defaults);
                assert_eq!(show_all(&a).await, a_start);
            }
            assert_eq!(pid(&c).await, pid(&b).await, "pool size 1 but two servers");
        }
    });
}

// ------------------------------------------------------------------ pinning

#[test]
fn unreplayable_state_pins_client_and_is_cleaned_up() {
    let (cluster, pooler) = setup("transaction", "scram-sha-256", 2);
    run_async(90, async {
        let adm = admin(&cluster).await;
        for kind in ["listen", "temp", "advisory"] {
            let (p, mut p_msgs) = pg_connect(&app_url(&pooler)).await;
            match kind {
                "listen" => sq(&p, "LISTEN pin_ch").await,
                "temp" => sq(&p, "CREATE TEMP TABLE pin_tmp (x int)").await,
                _ => sq(&p, "SELECT pg_advisory_lock(4242)").await,
            };
            let p0 = pid(&p).await;

            // Another client keeps working meanwhile, necessarily on the other server.
            let other = {
                let url = app_url(&pooler);
                tokio::spawn(async move {
                    let (q, _) = pg_connect(&url).await;
                    let mut pids = Vec::new();
                    for i in 0..20 {
                        sq(&q, "BEGIN").await;
                        pids.push(pid(&q).await);
                        assert_eq!(sq1(&q, &format!("SELECT {i}")).await, i.to_string());
                        sq(&q, "COMMIT").await;
                    }
                    pids
                })
            };
            for i in 0..10 {
                sq(&p, "BEGIN").await;
                assert_eq!(pid(&p).await, p0, "{kind}: pinned client moved (txn {i})");
                if kind == "temp" {
                    sq(&p, &format!("INSERT INTO pin_tmp VALUES ({i})")).await;
                }
                sq(&p, "COMMIT").await;
                assert_eq!(
                    pid(&p).await,
                    p0,
                    "{kind}: pinned client moved (statement {i})"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let q_pids = other.await.expect("other client failed");
            assert!(
                !q_pids.contains(&p0),
                "{kind}: another client ran on the pinned server {p0}"
            );
            match kind {
                "temp" => assert_eq!(sq1(&p, "SELECT count(*) FROM pin_tmp").await, "10"),
                "advisory" => assert_eq!(
                    sq1(&adm, &format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = {p0}")).await,
                    "1"
                ),
                _ => {
                    // The notification reaches the pinned listener.
                    let (q, _) = pg_connect(&app_url(&pooler)).await;
                    sq(&q, "NOTIFY pin_ch, 'ping'").await;
                    sq(&p, "SELECT 1").await;
                    let got = tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            match p_msgs.recv().await {
                                Some(AsyncMessage::Notification(n)) => break n,
                                Some(_) => continue,
                                None => panic!("listener connection closed"),
                            }
                        }
                    })
                    .await
                    .expect("LISTEN: no notification within 5 s");
                    assert_eq!((got.channel(), got.payload()), ("pin_ch", "ping"));
                }
            }
            drop(p);

            // Nothing of it is left on any server once the client is gone.
            // (LISTEN is checked on the servers themselves, below)
            let check = match kind {
                "temp" => "SELECT count(*) FROM pg_class WHERE relname = 'pin_tmp'",
                "advisory" => "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                _ => "SELECT 0",
            };
            let mut left = String::new();
            for _ in 0..100 {
                left = sq1(&adm, check).await;
                if left == "0" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                left, "0",
                "{kind}: left behind after the pinned client left: {check}"
            );
            // Ask both servers of the pool directly: hold both with open transactions.
            let (c1, _) = pg_connect(&app_url(&pooler)).await;
            let (c2, _) = pg_connect(&app_url(&pooler)).await;
            sq(&c1, "BEGIN").await;
            sq(&c2, "BEGIN").await;
            assert_ne!(pid(&c1).await, pid(&c2).await);
            for c in [&c1, &c2] {
                assert_eq!(
                    sq1(c, "SELECT count(*) FROM pg_listening_channels()").await,
                    "0",
                    "{kind}"
                );
                assert_eq!(
                    sq1(c, "SELECT to_regclass('pg_temp.pin_tmp') IS NULL").await,
                    "t",
                    "{kind}"
                );
                assert_eq!(
                    sq1(c, "SELECT pg_try_advisory_xact_lock(4242)").await,
                    "t",
                    "{kind}: advisory lock still held"
                );
                sq(c, "COMMIT").await;
            }
        }
    });
}

// ------------------------------------------------------------------ session mode reset

#[test]
fn session_mode_resets_server_between_clients() {
    let (cluster, pooler) = setup("session", "scram-sha-256", 1);
    psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE SCHEMA a_schema",
    );
    run_async(60, async {
        let adm = admin(&cluster).await;
        let (fresh, _) = pg_connect(&app_url(&pooler)).await;
        let defaults = show_all(&fresh).await;
        let p0 = pid(&fresh).await;
        drop(fresh);

        let (c1, _) = pg_connect(&app_url(&pooler)).await;
        sq(&c1, "SET search_path = a_schema").await;
        sq(&c1, "SET statement_timeout = '4321ms'").await;
        sq(&c1, "SET application_name = 'leaky'").await;
        sq(&c1, "SET TimeZone = 'Pacific/Chatham'").await;
        sq(&c1, "CREATE TEMP TABLE sess_tmp (x int)").await;
        sq(&c1, "SELECT pg_advisory_lock(77)").await;
        sq(&c1, "LISTEN sess_ch").await;
        c1.prepare("SELECT 1").await.unwrap(); // a named prepared statement
        sq(&c1, "PREPARE sql_prep AS SELECT 2").await;
        let p1 = pid(&c1).await;
        assert_eq!(p1, p0, "pool size 1 but two servers");
        drop(c1);

        let (c2, _) = pg_connect(&app_url(&pooler)).await;
        assert_eq!(
            pid(&c2).await,
            p1,
            "the server was not reused (pool size 1)"
        );
        assert_eq!(
            show_all(&c2).await,
            defaults,
            "settings leaked across clients in session mode"
        );
        assert_eq!(
            sq1(&c2, "SELECT to_regclass('pg_temp.sess_tmp') IS NULL").await,
            "t",
            "temp table leaked"
        );
        assert_eq!(
            sq1(&c2, "SELECT count(*) FROM pg_listening_channels()").await,
            "0",
            "LISTEN leaked"
        );
        assert_eq!(
            sq1(&c2, "SELECT count(*) FROM pg_prepared_statements").await,
            "0",
            "prepared statements leaked"
        );
        assert_eq!(
            sq1(
                &adm,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            )
            .await,
            "0",
            "advisory lock leaked"
        );
    });
}
