//! A client's session state across pooled servers: its SETs never leak to another client
//! in transaction mode (and are replayed for it, startup options included), state that
//! cannot be replayed (LISTEN, temp tables, advisory locks) pins the client to its server
//! and is cleaned up when it leaves, and session mode resets a server between clients.
//!
//! Every test starts its own cluster and pgsluice. Where a query ran is always asked of
//! the server (`pg_backend_pid()`), never taken from pgsluice's logs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::pg::{backend_pid, superuser};
use common::{
    app_url, pg_connect, pg_connect_config, psql_ok, run_async, setup, setup_with, sq, sq1,
};
use tokio_postgres::{AsyncMessage, Client};

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
        assert_eq!(
            backend_pid(&a).await,
            backend_pid(&b).await,
            "pool size 1 but two servers"
        );

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
            assert_eq!(
                backend_pid(&c).await,
                backend_pid(&b).await,
                "pool size 1 but two servers"
            );
        }
    });
}

// ------------------------------------------------------------------ pinning

#[test]
fn unreplayable_state_pins_client_and_is_cleaned_up() {
    // LISTEN pins only with listen_without_pinning = false (tests/dba_listen.rs has the
    // default).
    let (cluster, pooler) = setup_with(
        "transaction",
        "scram-sha-256",
        2,
        "listen_without_pinning = false",
    );
    run_async(90, async {
        let adm = superuser(&cluster).await;
        for kind in ["listen", "temp", "advisory"] {
            let (p, mut p_msgs) = pg_connect(&app_url(&pooler)).await;
            match kind {
                "listen" => sq(&p, "LISTEN pin_ch").await,
                "temp" => sq(&p, "CREATE TEMP TABLE pin_tmp (x int)").await,
                _ => sq(&p, "SELECT pg_advisory_lock(4242)").await,
            };
            let p0 = backend_pid(&p).await;

            // Another client keeps working meanwhile, necessarily on the other server.
            let other = {
                let url = app_url(&pooler);
                tokio::spawn(async move {
                    let (q, _) = pg_connect(&url).await;
                    let mut pids = Vec::new();
                    for i in 0..20 {
                        sq(&q, "BEGIN").await;
                        pids.push(backend_pid(&q).await);
                        assert_eq!(sq1(&q, &format!("SELECT {i}")).await, i.to_string());
                        sq(&q, "COMMIT").await;
                    }
                    pids
                })
            };
            for i in 0..10 {
                sq(&p, "BEGIN").await;
                assert_eq!(
                    backend_pid(&p).await,
                    p0,
                    "{kind}: pinned client moved (txn {i})"
                );
                if kind == "temp" {
                    sq(&p, &format!("INSERT INTO pin_tmp VALUES ({i})")).await;
                }
                sq(&p, "COMMIT").await;
                assert_eq!(
                    backend_pid(&p).await,
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
            assert_ne!(backend_pid(&c1).await, backend_pid(&c2).await);
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
        let adm = superuser(&cluster).await;
        let (fresh, _) = pg_connect(&app_url(&pooler)).await;
        let defaults = show_all(&fresh).await;
        let p0 = backend_pid(&fresh).await;
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
        let p1 = backend_pid(&c1).await;
        assert_eq!(p1, p0, "pool size 1 but two servers");
        drop(c1);

        let (c2, _) = pg_connect(&app_url(&pooler)).await;
        assert_eq!(
            backend_pid(&c2).await,
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
