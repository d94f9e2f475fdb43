//! Real clients through pgsluice: psql (every pool mode × client auth × server
//! auth), pgbench, tokio-postgres (simple and extended queries, transactions,
//! pipelining, notices, parameter status), and 500 concurrent clients on a pool of 10.
//! What a session's state does across pooled servers (SET leaks, pinning, session-mode
//! reset) is in tests/session_state.rs.
//!
//! Every test starts its own cluster (~0.5 s) and pgsluice, so tests run in
//! parallel under cargo test and nextest alike. Where a query ran is always
//! asked of the server (`pg_backend_pid()`), never taken from pgsluice's logs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::pg::{backend_pid, sqlstate, superuser, try_pg_connect};
use common::pgbench::{pgbench_init, pgbench_through};
use common::{Cluster, Pooler, app_url, pg_connect, psql, psql_ok, run_async, setup, sq, sq1};
use tokio_postgres::AsyncMessage;
use tokio_postgres::types::Type;

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

/// Runs `pgbench -n -S -M proto -c 10 -j 2 -T 3` through pgsluice and checks its report.
fn pgbench_select_only(mode: &str, proto: &str) {
    // Session mode: one server per client for its whole session, so 10 of them.
    let pool_size = if mode == "session" { 10 } else { 5 };
    let (cluster, pooler) = setup(mode, "scram-sha-256", pool_size);
    pgbench_init(&cluster);
    let args = ["-n", "-S", "-M", proto, "-c", "10", "-j", "2", "-T", "3"];
    let report = pgbench_through(&pooler, &args, 60);
    assert!(report.field("tps =") > 0.0, "mode {mode}: {}", report.text);
}

#[test]
fn pgbench_simple_transaction_mode() {
    pgbench_select_only("transaction", "simple");
}

#[test]
fn pgbench_extended_transaction_mode() {
    pgbench_select_only("transaction", "extended");
}

#[test]
fn pgbench_simple_statement_mode() {
    pgbench_select_only("statement", "simple");
}

#[test]
fn pgbench_extended_statement_mode() {
    pgbench_select_only("statement", "extended");
}

#[test]
fn pgbench_prepared_session_mode() {
    pgbench_select_only("session", "prepared");
}

// ------------------------------------------------------------------ tokio-postgres

async fn tokio_postgres_features(mode: &str, cluster: &Cluster, pooler: &Pooler) {
    let adm = superuser(cluster).await;
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
    let p1 = backend_pid(&client).await;
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
        backend_pid(&client).await,
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
    let client = try_pg_connect(&url)
        .await
        .map_err(|e| format!("client {id}: {e}"))?;
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
        let adm = superuser(&cluster).await;
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
