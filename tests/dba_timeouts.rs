//! Session timeouts (issue 16) with real clients: `query_timeout` cancels the query on the
//! server (57014) and the session goes on, `transaction_timeout` ends the transaction
//! (FATAL 25P04, rolled back), `client_idle_timeout` closes an idle client (57P05); set in
//! `[general]`, per database and per user. None leaves a server in a transaction.

mod common;

use std::time::Duration;

use common::pg::{Pg, run_async};
use common::{Cluster, Pooler, psql, psql_ok, server_activity, server_conns, wait_until};

/// Backends still running a pg_sleep, or idle in a transaction, of any user but postgres.
fn busy_backends(c: &Cluster) -> String {
    psql_ok(
        &c.primary_url("postgres"),
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND usename <> 'postgres' AND ((state = 'active' AND query LIKE '%pg_sleep%') \
         OR state LIKE 'idle in transaction%')",
    )
}

fn assert_no_busy_server(c: &Cluster) {
    assert!(
        wait_until(Duration::from_secs(10), || busy_backends(c) == "0"),
        "a server is still busy or in a transaction:\n{}",
        server_activity(&c.primary_url("postgres"), "app")
    );
}

/// The cluster's transaction-mode config with `general` lines, and `db_app` / `user_md5`
/// lines in `[databases.app]` / md5user's `[[users]]`.
fn config(c: &Cluster, general: &str, db_app: &str, user_md5: &str) -> String {
    c.pooler_config("transaction", "scram-sha-256", 3)
        .replacen("[general]\n", &format!("[general]\n{general}\n"), 1)
        .replacen(
            "[databases.app]\n",
            &format!("[databases.app]\n{db_app}\n"),
            1,
        )
        .replacen(
            "name = \"md5user\"\npassword = \"md5_pw\"\n",
            &format!("name = \"md5user\"\npassword = \"md5_pw\"\n{user_md5}\n"),
            1,
        )
}

#[test]
fn query_timeout_cancels_on_the_server_and_the_session_goes_on() {
    let cluster = Cluster::start(0);
    // 0.5 s on database app; md5user has none of its own (0 wins over the database's).
    let pooler = Pooler::start(&config(
        &cluster,
        "",
        "query_timeout = 0.5",
        "query_timeout = 0",
    ));
    let app = pooler.url("app", "app_pw", "app");
    // psql gets the cancel's error.
    let out = psql(&app, "SELECT pg_sleep(30)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "pg_sleep(30) finished");
    assert!(err.contains("canceling statement"), "{err}");
    assert_no_busy_server(&cluster);
    run_async(120, async {
        let c = Pg::connect(&app).await;
        assert_eq!(c.fails("SELECT pg_sleep(30)").await, "57014");
        assert_eq!(c.one("SELECT 7").await, "7", "the session goes on");
        // Inside a transaction: the transaction is aborted, the client rolls it back.
        c.q("BEGIN").await;
        assert_eq!(c.fails("SELECT pg_sleep(30)").await, "57014");
        assert_eq!(c.fails("SELECT 1").await, "25P02");
        c.q("ROLLBACK").await;
        assert_eq!(c.one("SELECT 8").await, "8");
        assert_no_busy_server(&cluster);
        // Database postgres has no query_timeout, nor md5user on app.
        let other = Pg::connect(&pooler.url("app", "app_pw", "postgres")).await;
        other.q("SELECT pg_sleep(0.8)").await;
        let md5 = Pg::connect(&pooler.url("md5user", "md5_pw", "app")).await;
        md5.q("SELECT pg_sleep(0.8)").await;
        for p in [c, other, md5] {
            p.close().await;
        }
    });
}

#[test]
fn transaction_timeout_ends_the_transaction_and_says_why() {
    let cluster = Cluster::start(0);
    psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE t (v int)",
    );
    let pooler = Pooler::start(&config(&cluster, "transaction_timeout = 1", "", ""));
    let app = pooler.url("app", "app_pw", "app");
    run_async(120, async {
        // An open transaction, idle: ended, rolled back, the client told why.
        let c = Pg::connect(&app).await;
        c.q("BEGIN; INSERT INTO t VALUES (1)").await;
        let code = c.wait_closed("the transaction timeout").await;
        assert_eq!(code.as_deref(), Some("25P04"));
        // A transaction running a long query: the query is stopped too.
        let c = Pg::connect(&app).await;
        let r = c
            .try_q("BEGIN; INSERT INTO t VALUES (2); SELECT pg_sleep(30)")
            .await;
        let code = r.err().and_then(|e| common::pg::code(&e));
        assert_eq!(code.as_deref(), Some("25P04"));
        assert_no_busy_server(&cluster);
        // A single long statement outside a block is a transaction too.
        let c = Pg::connect(&app).await;
        let r = c.try_q("SELECT pg_sleep(30)").await;
        assert_eq!(
            r.err().and_then(|e| common::pg::code(&e)).as_deref(),
            Some("25P04")
        );
        assert_no_busy_server(&cluster);
        // Short transactions are untouched.
        let c = Pg::connect(&app).await;
        c.q("BEGIN; INSERT INTO t VALUES (3); COMMIT").await;
        assert_eq!(c.one("SELECT string_agg(v::text, ',') FROM t").await, "3");
        c.close().await;
    });
    let (_, in_txn) = server_conns(&cluster.primary_url("postgres"), "app");
    assert_eq!(in_txn, 0);
}

#[test]
fn client_idle_timeout_closes_an_idle_client_except_where_turned_off() {
    let cluster = Cluster::start(0);
    let pooler = Pooler::start(&config(
        &cluster,
        "client_idle_timeout = 1",
        "",
        "client_idle_timeout = 0",
    ));
    run_async(120, async {
        // md5user (turned off for it) connects first and stays idle longest.
        let md5 = Pg::connect(&pooler.url("md5user", "md5_pw", "app")).await;
        md5.q("SELECT 1").await;
        let c = Pg::connect(&pooler.url("app", "app_pw", "app")).await;
        c.q("SELECT 1").await;
        let code = c.wait_closed("the idle client").await;
        assert_eq!(code.as_deref(), Some("57P05"));
        assert_eq!(md5.one("SELECT 2").await, "2", "md5user is still connected");
        md5.close().await;
    });
    assert_no_busy_server(&cluster);
}
