//! The admin console (databases `pgsluice` and `pgbouncer`): SHOW commands with
//! PgBouncer's columns, PAUSE/RESUME, KILL, DISABLE/ENABLE, SHUTDOWN, RELOAD and SET, and
//! who may do what (issue 5). `/metrics`, the health endpoints and the slow query log are
//! in tests/monitoring.rs.
//!
//! Every test runs its own PostgreSQL cluster and pgsluice. Values are checked against
//! what the test itself did (clients it connected, queries it ran), never against times;
//! states that settle a moment after a client has its answer are waited for.

mod common;

use std::time::Duration;

use common::console::{Rows, console_config, rows_of};
use common::pg::{Pg, code, rt, within};
use common::{Cluster, Pooler, psql, psql_ok, wait_until};

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
    let p = Pooler::start(&console_config(&c, "transaction", 3, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let before = admin.show("SHOW STATS").await;
        assert_starts_with(&before, STATS_COLUMNS, "SHOW STATS");
        assert_eq!(before.num("database", "app", "total_query_count"), 0);

        // one client inside a transaction (holds a server), one idle between queries
        let busy = Pg::connect(&app).await;
        busy.q("BEGIN").await;
        busy.q("SELECT 1").await;
        let idle = Pg::connect(&app).await;
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
    let p = Pooler::start(&console_config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let a = Pg::connect(&app).await;
        let b = Pg::connect(&app).await;
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
        // LISTEN no longer pins (pgsluice's listener serves it).
        a.q("LISTEN news").await;
        assert!(admin.show("SHOW PINS").await.rows.is_empty());
        a.q("SELECT pg_advisory_lock(7)").await;
        let pins = admin.show("SHOW PINS").await;
        assert_eq!(pins.rows.len(), 1, "{pins:#?}");
        assert_eq!(pins.rows[0]["pins"].as_deref(), Some("advisory_lock"));
        assert!(
            pins.rows[0]["server"]
                .as_deref()
                .unwrap_or("")
                .starts_with('s')
        );
        let clients = admin.show("SHOW CLIENTS").await;
        assert_eq!(clients.with("pins", "advisory_lock").len(), 1);
        a.q("SELECT pg_advisory_unlock_all()").await;
        assert!(admin.show("SHOW PINS").await.rows.is_empty());
    });
}

#[test]
fn pause_holds_new_transactions_and_resume_releases_them() {
    let c = Cluster::start(0);
    let p = Pooler::start(&console_config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let running = Pg::connect(&app).await;
        running.q("BEGIN").await;
        running.q("SELECT 1").await;

        // PAUSE waits for the running transaction to finish
        let admin2 = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let pause = tokio::spawn(async move {
            admin2.q("PAUSE app").await;
            admin2
        });
        // PAUSE has begun once the database shows paused; it can only return once
        // `running` gives its server back
        let dbs = admin
            .show_until("SHOW DATABASES", |d| d.num("name", "app", "paused") == 1)
            .await;
        assert_eq!(dbs.num("name", "app", "paused"), 1, "PAUSE did not begin");
        running.q("SELECT 2").await; // the running transaction goes on undisturbed
        assert!(
            !pause.is_finished(),
            "PAUSE returned while a transaction ran"
        );
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
        let pools = admin
            .show_until("SHOW POOLS", |p| {
                p.num("database", "app", "cl_waiting") == 1
            })
            .await;
        assert_eq!(
            pools.num("database", "app", "cl_waiting"),
            1,
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
    let mut p = Pooler::start(&console_config(&c, "transaction", 2, ""));
    let app = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
        let victim = Pg::connect(&app).await;
        victim.q("BEGIN").await;
        victim.q("SELECT 1").await;
        let other = Pg::connect(&p.url("app", "app_pw", "postgres")).await;
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
        let refused = Pg::try_connect(&app)
            .await
            .err()
            .expect("login to a disabled database");
        assert_eq!(code(&refused).as_deref(), Some("55000"), "{refused:?}");
        admin.q("ENABLE app").await;
        assert_eq!(Pg::connect(&app).await.one("SELECT 1").await, "1");
        assert_eq!(admin.fails("KILL pgsluice").await, "0A000");

        // SHUTDOWN closes everyone now and exits
        let stuck = Pg::connect(&app).await;
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
    let p = Pooler::start(&console_config(&c, "transaction", 1, ""));
    let app = p.url("app", "app_pw", "app");
    let admin_url = p.url("admin", "admin_pw", "pgsluice");
    rt().block_on(async {
        let admin = Pg::connect(&admin_url).await;
        let busy = Pg::connect(&app).await;
        busy.q("BEGIN").await;
        busy.q("SELECT 1").await;
        // with one connection, a second client waits
        let second = Pg::connect(&app).await;
        let waiting = tokio::spawn(async move {
            second.q("SELECT 2").await;
        });
        let pools = admin
            .show_until("SHOW POOLS", |p| {
                p.num("database", "app", "cl_waiting") == 1
            })
            .await;
        assert_eq!(
            pools.num("database", "app", "cl_waiting"),
            1,
            "the second client is not shown waiting"
        );
        assert!(
            !waiting.is_finished(),
            "pool size 1 served two transactions"
        );

        p.rewrite_config(&console_config(&c, "transaction", 3, ""));
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
    let p = Pooler::start(&console_config(&c, "transaction", 2, ""));
    rt().block_on(async {
        // a stats user may SHOW, nothing else
        let stats = Pg::connect(&p.url("watcher", "watcher_pw", "pgbouncer")).await;
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
            let e = Pg::try_connect(&p.url("app", "app_pw", db))
                .await
                .err()
                .expect("a normal user reached the console");
            assert_eq!(code(&e).as_deref(), Some("42501"), "{e:?}");
        }
        // the console still authenticates: a wrong password is refused as usual
        let e = Pg::try_connect(&p.url("admin", "wrong", "pgsluice"))
            .await
            .err()
            .expect("wrong password accepted");
        assert_eq!(code(&e).as_deref(), Some("28P01"), "{e:?}");

        let admin = Pg::connect(&p.url("admin", "admin_pw", "pgsluice")).await;
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
