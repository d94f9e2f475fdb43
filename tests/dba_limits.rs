//! The limits DBAs bring from PgBouncer (issue 16), reached by real clients: clients per
//! database and per user refused with 53300, server connections per database and per user
//! held in pg_stat_activity while clients wait, the reserve pool, the server check, and
//! these settings in SHOW CONFIG, console SET and RELOAD.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::console::{Rows, console_config};
use common::pg::{Pg, run_async, within};
use common::pgbench::{pgbench_init, pgbench_through};
use common::{Cluster, Pooler, psql, psql_ok, server_activity, wait_until};

/// Server connections to database `db` (all users) on the primary.
fn db_conns(c: &Cluster, db: &str) -> u32 {
    psql_ok(
        &c.primary_url("postgres"),
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND datname = '{db}' AND usename <> 'postgres'"
        ),
    )
    .parse()
    .expect("count")
}

/// Server connections of `user` (all databases) on the primary.
fn user_conns(c: &Cluster, user: &str) -> u32 {
    psql_ok(
        &c.primary_url("postgres"),
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND usename = '{user}'"
        ),
    )
    .parse()
    .expect("count")
}

/// `col` of SHOW POOLS's row for (database, user) on the primary.
fn pool_col(rows: &Rows, db: &str, user: &str, col: &str) -> i64 {
    let row = rows
        .rows
        .iter()
        .find(|r| {
            r.get("database").and_then(|v| v.as_deref()) == Some(db)
                && r.get("user").and_then(|v| v.as_deref()) == Some(user)
                && r.get("node").and_then(|v| v.as_deref()) == Some("0")
        })
        .unwrap_or_else(|| panic!("no pool {db}/{user} in {rows:#?}"));
    row[col]
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{col} of {db}/{user} in {rows:#?}"))
}

/// The cluster's config with console user admin, `general` lines in `[general]`.
fn config(c: &Cluster, pool: u32, general: &str) -> String {
    let cfg = console_config(c, "transaction", pool, "");
    cfg.replacen("[general]\n", &format!("[general]\n{general}\n"), 1)
}

#[test]
fn client_limits_refuse_with_53300_naming_the_limit_and_follow_set_and_reload() {
    let cluster = Cluster::start(0);
    let pooler = Pooler::start(&config(
        &cluster,
        2,
        "max_db_client_connections = 2\nmax_user_client_connections = 3",
    ));
    let app = pooler.url("app", "app_pw", "app");
    let admin_url = pooler.url("admin", "admin_pw", "pgsluice");
    run_async(120, async {
        let admin = Pg::connect(&admin_url).await;
        let cfg = admin.show("SHOW CONFIG").await;
        for (key, value) in [
            ("max_db_client_connections", "2"),
            ("max_user_client_connections", "3"),
            ("max_db_connections", "0"),
            ("reserve_pool_timeout", "5.0"),
            ("server_check_query", "select 1"),
            ("query_timeout", "0.0"),
            ("tcp_keepalive", "true"),
        ] {
            let row = cfg.with("key", key);
            assert_eq!(row.len(), 1, "SHOW CONFIG has {key}: {cfg:#?}");
            assert_eq!(row[0]["value"].as_deref(), Some(value), "{key}");
            assert_eq!(row[0]["changeable"].as_deref(), Some("yes"), "{key}");
        }
        let a1 = Pg::connect(&app).await;
        let a2 = Pg::connect(&app).await;
        // A third client of database app: psql is refused, naming the limit.
        let out = psql(&app, "SELECT 1");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a third client got in");
        assert!(
            err.contains("max_db_client_connections (2)") && err.contains("\"app\""),
            "{err}"
        );
        let e = Pg::try_connect(&app).await.err().expect("refused");
        assert_eq!(common::pg::code(&e).as_deref(), Some("53300"), "{e}");
        // The same user on another database counts against max_user_client_connections.
        let other = pooler.url("app", "app_pw", "postgres");
        let p1 = Pg::connect(&other).await;
        let e = Pg::try_connect(&other).await.err().expect("refused");
        assert_eq!(common::pg::code(&e).as_deref(), Some("53300"));
        assert!(
            format!("{e:?}").contains("max_user_client_connections (3)"),
            "{e}"
        );
        // Other users of another database are not limited.
        let md5 = Pg::connect(&pooler.url("md5user", "md5_pw", "postgres")).await;
        md5.q("SELECT 1").await;
        // A client that leaves gives its place back.
        a2.close().await;
        let a3 = Pg::connect(&app).await;
        a3.q("SELECT 1").await;
        // Console SET changes the limit for the next login; RELOAD restores the file's.
        admin.q("SET max_db_client_connections = 5").await;
        p1.close().await;
        let a4 = Pg::connect(&app).await;
        admin.q("SET max_user_client_connections = 0").await;
        let a5 = Pg::connect(&app).await;
        let a6 = Pg::connect(&app).await;
        let e = Pg::try_connect(&app).await.err().expect("refused");
        assert!(
            format!("{e:?}").contains("max_db_client_connections (5)"),
            "{e}"
        );
        admin.q("RELOAD").await;
        let cfg = admin.show("SHOW CONFIG").await;
        assert_eq!(
            cfg.with("key", "max_db_client_connections")[0]["value"].as_deref(),
            Some("2")
        );
        for c in [a1, a3, a4, a5, a6, md5, admin] {
            c.close().await;
        }
    });
}

#[test]
fn max_db_connections_holds_across_users_and_waiters_get_the_freed_place() {
    let cluster = Cluster::start(0);
    pgbench_init(&cluster);
    let pooler = Pooler::start(&config(
        &cluster,
        5,
        "max_db_connections = 2\nquery_wait_timeout = 30",
    ));
    let app = pooler.url("app", "app_pw", "app");
    let md5 = pooler.url("md5user", "md5_pw", "app");
    run_async(180, async {
        // md5user logs in first: its login opens a connection, idle in its pool.
        let m = Pg::connect(&md5).await;
        // Two transactions of user app take the database's two places: the second one
        // gets its place by closing md5user's idle connection.
        let t1 = Pg::connect(&app).await;
        let t2 = Pg::connect(&app).await;
        t1.q("BEGIN; SELECT 1").await;
        t2.q("BEGIN; SELECT 1").await;
        // md5user's pool has room of its own, but the database has none: it waits.
        let waiting = tokio::spawn(async move {
            let r = m.q("SELECT current_user").await;
            (m, common::pg::first(&r))
        });
        let admin = Pg::connect(&pooler.url("admin", "admin_pw", "pgsluice")).await;
        let pools = admin
            .show_until("SHOW POOLS", |r| {
                pool_col(r, "app", "md5user", "cl_waiting") == 1
            })
            .await;
        assert_eq!(
            pool_col(&pools, "app", "md5user", "cl_waiting"),
            1,
            "{pools:#?}"
        );
        assert_eq!(
            db_conns(&cluster, "app"),
            2,
            "{}",
            server_activity(&cluster.primary_url("postgres"), "app")
        );
        let dbs = admin.show("SHOW DATABASES").await;
        assert_eq!(dbs.num("name", "app", "max_connections"), 2);
        // A place frees when a transaction ends; the idle connection of app's pool is
        // closed to make room for md5user's.
        t1.q("COMMIT").await;
        let (m, who) = within("the waiting client", waiting).await.expect("task");
        assert_eq!(who, "md5user");
        assert!(db_conns(&cluster, "app") <= 2);
        t2.q("COMMIT").await;
        for c in [t1, t2, m] {
            c.close().await;
        }
        admin.close().await;
    });
    // pgbench with 8 clients through a pool of 5 behind max_db_connections = 2: every
    // transaction succeeds, and the server never sees more than 2 connections.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU32::new(0));
    let watcher = {
        let (stop, most) = (stop.clone(), most.clone());
        let url = cluster.primary_url("postgres");
        std::thread::spawn(move || {
            let sql = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                       AND datname = 'app' AND usename <> 'postgres'";
            while !stop.load(Ordering::Relaxed) {
                let n: u32 = psql_ok(&url, sql).parse().expect("count");
                most.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let report = pgbench_through(&pooler, &["-n", "-c", "8", "-j", "2", "-T", "5"], 120);
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let seen = most.load(Ordering::Relaxed);
    assert!(
        (1..=2).contains(&seen),
        "{seen} server connections to app under max_db_connections = 2\n{}",
        report.text
    );
}

#[test]
fn max_user_connections_holds_across_databases() {
    let cluster = Cluster::start(0);
    let cfg = config(&cluster, 5, "query_wait_timeout = 30").replacen(
        "[[users]]\nname = \"app\"\npassword = \"app_pw\"\n",
        "[[users]]\nname = \"app\"\npassword = \"app_pw\"\nmax_user_connections = 1\n",
        1,
    );
    let pooler = Pooler::start(&cfg);
    run_async(120, async {
        let on_app = Pg::connect(&pooler.url("app", "app_pw", "app")).await;
        let on_pg = Pg::connect(&pooler.url("app", "app_pw", "postgres")).await;
        on_app.q("BEGIN; SELECT 1").await;
        let waiting = tokio::spawn(async move {
            let r = on_pg.q("SELECT current_database()").await;
            (on_pg, common::pg::first(&r))
        });
        let admin = Pg::connect(&pooler.url("admin", "admin_pw", "pgsluice")).await;
        let pools = admin
            .show_until("SHOW POOLS", |r| {
                pool_col(r, "postgres", "app", "cl_waiting") == 1
            })
            .await;
        assert_eq!(pool_col(&pools, "postgres", "app", "cl_waiting"), 1);
        assert_eq!(user_conns(&cluster, "app"), 1);
        on_app.q("COMMIT").await;
        let (on_pg, db) = within("the waiting client", waiting).await.expect("task");
        assert_eq!(db, "postgres");
        assert_eq!(user_conns(&cluster, "app"), 1);
        on_app.close().await;
        on_pg.close().await;
        admin.close().await;
    });
}

#[test]
fn the_reserve_pool_opens_only_after_its_timeout_and_closes_when_idle() {
    let cluster = Cluster::start(0);
    let (http, http_port) = common::console::http_section();
    let cfg = console_config(&cluster, "transaction", 1, &http).replacen(
        "[general]\n",
        "[general]\nreserve_pool_size = 1\nreserve_pool_timeout = 1000\nquery_wait_timeout = 1\n",
        1,
    );
    let pooler = Pooler::start(&cfg);
    let app = pooler.url("app", "app_pw", "app");
    run_async(120, async {
        let admin = Pg::connect(&pooler.url("admin", "admin_pw", "pgsluice")).await;
        let holder = Pg::connect(&app).await;
        holder.q("BEGIN; SELECT 1").await;
        // Before reserve_pool_timeout a second client only waits (and gives up after
        // query_wait_timeout): no reserve connection.
        let other = Pg::connect(&app).await;
        assert_eq!(other.fails("SELECT 1").await, "57014");
        assert_eq!(user_conns(&cluster, "app"), 1);
        let pools = admin.show("SHOW POOLS").await;
        assert_eq!(pool_col(&pools, "app", "app", "reserve_pool"), 1);
        assert_eq!(pool_col(&pools, "app", "app", "reserve_used"), 0);
        // With a short reserve_pool_timeout (console SET), a client that waited past it
        // gets a reserve connection.
        admin.q("SET reserve_pool_timeout = 0.2").await;
        admin.q("SET query_wait_timeout = 30").await;
        let other = Pg::connect(&app).await;
        other.q("BEGIN; SELECT 1").await;
        assert_eq!(user_conns(&cluster, "app"), 2);
        let pools = admin.show("SHOW POOLS").await;
        assert_eq!(
            pool_col(&pools, "app", "app", "reserve_used"),
            1,
            "{pools:#?}"
        );
        let (_, body) = common::console::http_get(http_port, "/metrics");
        let samples = common::console::parse_prometheus(&body);
        let want = [("database", "app"), ("user", "app")];
        assert_eq!(
            common::console::metric(&samples, "pgsluice_reserve_pool_size", &want),
            1.0
        );
        assert_eq!(
            common::console::metric(&samples, "pgsluice_reserve_pool_connections", &want),
            1.0
        );
        // Back with nobody waiting, the reserve connection closes.
        other.q("COMMIT").await;
        let pools = admin
            .show_until("SHOW POOLS", |r| {
                pool_col(r, "app", "app", "reserve_used") == 0
            })
            .await;
        assert_eq!(pool_col(&pools, "app", "app", "reserve_used"), 0);
        let url = cluster.primary_url("postgres");
        assert!(
            wait_until(Duration::from_secs(10), || user_conns(&cluster, "app") == 1),
            "{}",
            server_activity(&url, "app")
        );
        holder.q("COMMIT").await;
        for c in [holder, other, admin] {
            c.close().await;
        }
    });
}

#[test]
fn the_server_check_runs_on_a_connection_idle_past_the_delay() {
    let cluster = Cluster::start(0);
    psql_ok(
        &cluster.node_url("primary", "postgres", "", "app"),
        "CREATE SEQUENCE public.checks; GRANT USAGE ON SEQUENCE public.checks TO PUBLIC",
    );
    let pooler = Pooler::start(&config(
        &cluster,
        1,
        "server_check_query = \"SELECT nextval('public.checks')\"\nserver_check_delay = 0",
    ));
    let app = pooler.url("app", "app_pw", "app");
    let checks = || {
        psql_ok(
            &cluster.node_url("primary", "postgres", "", "app"),
            "SELECT last_value FROM public.checks",
        )
    };
    run_async(120, async {
        let c = Pg::connect(&app).await;
        // Five transactions, each taking the pool's idle connection: each is checked
        // first (the first one's connection was just opened, also idle 0 s or more).
        for _ in 0..5 {
            c.q("SELECT 1").await;
        }
        let n: i64 = checks().parse().expect("number");
        assert!(n >= 4, "{n} checks for 5 checkouts");
        // A check that fails closes the connection: each query gets a fresh backend.
        let admin = Pg::connect(&pooler.url("admin", "admin_pw", "pgsluice")).await;
        admin.q("SET server_check_query = 'SELECT 1/0'").await;
        let mut pids = Vec::new();
        for _ in 0..3 {
            pids.push(c.one("SELECT pg_backend_pid()").await);
        }
        pids.dedup();
        assert_eq!(
            pids.len(),
            3,
            "a failed check closes the connection: {pids:?}"
        );
        // With a long delay no check runs: the same backend serves every query.
        admin.q("SET server_check_delay = 1000").await;
        let mut pids = Vec::new();
        for _ in 0..3 {
            pids.push(c.one("SELECT pg_backend_pid()").await);
        }
        pids.dedup();
        assert_eq!(pids.len(), 1, "{pids:?}");
        c.close().await;
        admin.close().await;
    });
}
