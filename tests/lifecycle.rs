//! The process's life: `--check-config`, environment overrides, reload on SIGHUP and the
//! drain on SIGTERM (DESIGN.md "Configuration and interfaces", issue 2).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pg::{Pg, code, rt};
use common::{Cluster, Pooler, psql_ok, server_activity, unique_path, wait_until, with_general};

// ------------------------------------------------------------------ helpers

/// Runs `n` clients of `url` at once, each `SELECT pg_sleep(secs)`, while sampling
/// pg_stat_activity on the primary with `count_sql`; returns the largest count seen.
async fn max_during_sleepers(c: &Cluster, url: &str, n: usize, secs: f64, count_sql: &str) -> i64 {
    let monitor = Pg::connect(&c.primary_url("postgres")).await;
    let mut sleepers = Vec::new();
    for i in 0..n {
        let url = url.to_string();
        sleepers.push(tokio::spawn(async move {
            let pg = Pg::connect(&url).await;
            pg.q(&format!("SELECT pg_sleep({secs})")).await;
            assert_eq!(pg.one(&format!("SELECT {i}")).await, i.to_string());
            pg.close().await;
        }));
    }
    let all = tokio::spawn(async move {
        for s in sleepers {
            s.await.expect("a sleeper failed");
        }
    });
    tokio::pin!(all);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut max = 0;
    loop {
        tokio::select! {
            done = &mut all => {
                done.expect("sleepers");
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(30)) => {
                assert!(tokio::time::Instant::now() < deadline, "sleepers did not finish");
                let n: i64 = monitor.one(count_sql).await.parse().unwrap();
                max = max.max(n);
            }
        }
    }
    monitor.close().await;
    max
}

/// Sends SIGHUP and waits (≤10 s) until the log has one more line containing `expect`.
fn reload(p: &Pooler, expect: &str) {
    let before = p.log().matches(expect).count();
    p.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || p.log().matches(expect).count()
            > before),
        "no {expect:?} in the log after SIGHUP:\n{}",
        p.log()
    );
}

/// Runs `pgsluice --check-config --config FILE` with `text` in FILE and `envs` added
/// (and no inherited PGSLUICE_* variables).
fn check_config(text: &str, envs: &[(&str, &str)]) -> Output {
    let dir = unique_path("check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgsluice.toml");
    std::fs::write(&path, text).unwrap();
    let out = check_config_file(&path, envs);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn check_config_file(path: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "30"])
        .arg(env!("CARGO_BIN_EXE_pgsluice"))
        .arg("--check-config")
        .arg("--config")
        .arg(path);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGSLUICE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run pgsluice --check-config")
}

const GOOD: &str = r#"[general]
listen_addr = "127.0.0.1:6432"
pool_mode = "transaction"
default_pool_size = 5

[auth]
type = "scram-sha-256"

[[users]]
name = "app"
password = "app_pw"

[databases.app]
dbname = "app"
primary = "127.0.0.1:5432"
replicas = ["127.0.0.1:5433"]
"#;

// ------------------------------------------------------------------ tests

#[test]
fn check_config_accepts_good_and_names_bad_keys() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("pooler.toml.example");
    let out = check_config_file(&example, &[]);
    assert!(out.status.success(), "pooler.toml.example: {out:?}");
    let out = check_config(GOOD, &[]);
    assert!(out.status.success(), "good config refused: {out:?}");

    let cases = [
        (
            "unknown key",
            GOOD.replace("default_pool_size = 5", "pool_sise = 3"),
            "pool_sise",
        ),
        (
            "bad listen_addr",
            GOOD.replace("\"127.0.0.1:6432\"", "\"nope\""),
            "listen_addr",
        ),
        (
            "primary without a port",
            GOOD.replace("primary = \"127.0.0.1:5432\"", "primary = \"nohostport\""),
            "primary",
        ),
        (
            "bad pool_mode",
            GOOD.replace("pool_mode = \"transaction\"", "pool_mode = \"bogus\""),
            "general.pool_mode",
        ),
    ];
    for (what, text, key) in cases {
        assert_ne!(text, GOOD, "{what}: test did not change the config");
        let out = check_config(&text, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted: {out:?}");
        assert!(out.status.code().is_some(), "{what}: killed: {out:?}");
        assert!(
            stderr.contains(key),
            "{what}: stderr does not name {key}: {stderr}"
        );
    }

    let out = check_config(GOOD, &[("PGSLUICE_GENERAL__POOL_MODE", "bogus")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "env pool_mode=bogus accepted: {out:?}"
    );
    assert!(
        stderr.contains("pool_mode"),
        "env: stderr does not name pool_mode: {stderr}"
    );
    let out = check_config(GOOD, &[("PGSLUICE_GENERAL__POOL_MODE", "session")]);
    assert!(
        out.status.success(),
        "env pool_mode=session refused: {out:?}"
    );
}

#[test]
fn env_default_pool_size_is_honoured() {
    let c = Cluster::start(0);
    let p = Pooler::start_with_env(
        &c.pooler_config("transaction", "scram-sha-256", 10),
        &[],
        &[("PGSLUICE_GENERAL__DEFAULT_POOL_SIZE", "3")],
    );
    rt().block_on(async {
        let max = max_during_sleepers(
            &c,
            &p.url("app", "app_pw", "app"),
            5,
            1.0,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND usename = 'app'",
        )
        .await;
        assert_eq!(
            max, 3,
            "server connections with PGSLUICE_GENERAL__DEFAULT_POOL_SIZE=3 (file: 10)"
        );
    });
}

#[test]
fn sighup_reloads_without_dropping_clients() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 2));
    psql_ok(
        &c.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE r (i int)",
    );
    let app = p.url("app", "app_pw", "app");
    let app2 = p.url("app", "app_pw", "app2");
    let with_app2 = format!(
        "{}\n[databases.app2]\ndbname = \"app\"\nprimary = \"127.0.0.1:{}\"\n",
        c.pooler_config("transaction", "scram-sha-256", 4),
        c.primary_port
    );
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' \
                    AND state = 'active' AND query LIKE 'SELECT pg_sleep%'";
    rt().block_on(async {
        let before = Pg::connect(&app).await;
        assert_eq!(before.one("SELECT 1").await, "1");
        let e = Pg::try_connect(&app2)
            .await
            .err()
            .expect("app2 before it is configured");
        assert_eq!(code(&e).as_deref(), Some("3D000"), "{e:?}");

        // pool size 2 → 4, database app2 added
        p.rewrite_config(&with_app2);
        reload(&p, "configuration reloaded");
        assert_eq!(
            before.one("SELECT 2").await,
            "2",
            "client connected across the reload"
        );
        let new2 = Pg::connect(&app2).await;
        assert_eq!(new2.one("SELECT current_database()").await, "app");
        new2.close().await;
        let max = max_during_sleepers(&c, &app, 4, 1.5, sleeping).await;
        assert_eq!(max, 4, "4 concurrent sleepers after the pool grew to 4");

        // a broken file is refused; the running config stays
        p.rewrite_config("[general]\npool_sise = 3\n");
        reload(&p, "reload failed");
        assert_eq!(before.one("SELECT 3").await, "3");
        let again2 = Pg::connect(&app2).await;
        assert_eq!(
            again2.one("SELECT 1").await,
            "1",
            "app2 after a refused reload"
        );
        again2.close().await;
        assert_eq!(psql_ok(&app, "SELECT 1"), "1");

        // app2 removed: new clients are refused, one inside a transaction finishes it
        let d = Pg::connect(&app2).await;
        d.q("BEGIN").await;
        d.q("INSERT INTO r VALUES (1)").await;
        p.rewrite_config(&c.pooler_config("transaction", "scram-sha-256", 4));
        reload(&p, "configuration reloaded");
        let e = Pg::try_connect(&app2)
            .await
            .err()
            .expect("app2 after it was removed");
        assert_eq!(code(&e).as_deref(), Some("3D000"), "{e:?}");
        d.q("INSERT INTO r VALUES (2)").await;
        d.q("COMMIT").await;
        let _ = d.try_q("SELECT 1").await; // may be refused now that app2 is gone
        d.close().await;
        assert_eq!(
            psql_ok(&c.primary_url("app"), "SELECT count(*) FROM r"),
            "2",
            "the transaction on the removed database did not commit"
        );
        assert_eq!(before.one("SELECT 4").await, "4");
        assert_eq!(psql_ok(&app, "SELECT 1"), "1");
    });
}

/// Tries new connections until one is refused (≤10 s); checks how.
async fn assert_new_connections_refused(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Pg::try_connect(url).await {
            Ok(pg) => {
                assert!(
                    Instant::now() < deadline,
                    "new connections still accepted after SIGTERM"
                );
                drop(pg);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => {
                let c = code(&e);
                assert!(
                    c.is_none() || c.as_deref() == Some("57P03"),
                    "new connection during drain: {e:?}"
                );
                return;
            }
        }
    }
}

/// The threads of process `pid` (each a directory under /proc/PID/task).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One worker (the default) is one thread, its clients, signals and statistics on it,
/// as PgBouncer (stop 43: the kernel takes no reference per socket per system call, and
/// glibc's allocator no lock); with two, a thread each beside the main thread. Either
/// way a client is served and SIGHUP reloads.
#[test]
fn one_worker_is_one_thread() {
    let c = Cluster::start(0);
    for (workers, expect) in [(1, 1), (2, 3)] {
        let p = Pooler::start(&with_general(
            &c.pooler_config("transaction", "scram-sha-256", 4),
            &format!("workers = {workers}"),
        ));
        let url = p.url("app", "app_pw", "app");
        rt().block_on(async {
            let a = Pg::connect(&url).await;
            assert_eq!(a.one("SELECT 1").await, "1");
            reload(&p, "configuration reloaded");
            assert_eq!(a.one("SELECT 2").await, "2");
            a.close().await;
        });
        assert_eq!(
            threads(p.pid()),
            expect,
            "threads of pgsluice with workers = {workers}:\n{}",
            p.log()
        );
    }
}

#[test]
fn sigterm_drains_transactions_then_exits() {
    let c = Cluster::start(0);
    // a long shutdown_timeout: exiting soon after the last client shows the drain ended
    // because the clients were done, not because the timeout struck
    let mut p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 4),
        "shutdown_timeout = 30",
    ));
    psql_ok(
        &c.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE d (i int)",
    );
    let url = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let a = Pg::connect(&url).await;
        a.q("BEGIN").await;
        a.q("INSERT INTO d VALUES (1)").await;
        let b = Pg::connect(&url).await;
        assert_eq!(b.one("SELECT 1").await, "1");

        p.signal("TERM");
        assert_new_connections_refused(&url).await;
        // B, between transactions, is sent away
        let b_code = b
            .wait_closed("idle client B disconnected by the drain")
            .await;
        assert!(
            b_code.is_none() || b_code.as_deref() == Some("57P01"),
            "B ended with {b_code:?}"
        );
        // A finishes its transaction
        a.q("INSERT INTO d VALUES (2)").await;
        a.q("COMMIT").await;
        assert_eq!(
            psql_ok(&c.primary_url("app"), "SELECT count(*) FROM d"),
            "2"
        );
        let a_code = a
            .wait_closed("client A disconnected after its COMMIT")
            .await;
        assert!(
            a_code.is_none() || a_code.as_deref() == Some("57P01"),
            "A ended with {a_code:?}"
        );
    });
    let status = p
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("pgsluice still runs after its clients left:\n{}", p.log()));
    assert!(
        status.success(),
        "pgsluice exited with {status}:\n{}",
        p.log()
    );
}

#[test]
fn sigterm_cuts_a_stuck_transaction_after_shutdown_timeout() {
    let c = Cluster::start(0);
    let mut p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 2),
        "shutdown_timeout = 3",
    ));
    psql_ok(
        &c.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE s (i int)",
    );
    let url = p.url("app", "app_pw", "app");
    let admin = c.primary_url("postgres");
    rt().block_on(async {
        let a = Pg::connect(&url).await;
        a.q("BEGIN").await;
        a.q("INSERT INTO s VALUES (1)").await;
        p.signal("TERM");
        assert_new_connections_refused(&url).await;
        // the transaction may go on while the timeout runs
        a.q("INSERT INTO s VALUES (2)").await;
        let _ = a.wait_closed("client A cut after shutdown_timeout").await;
    });
    let status = p
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("pgsluice still runs after shutdown_timeout:\n{}", p.log()));
    assert!(
        status.code().is_some(),
        "pgsluice killed by a signal: {status}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || common::server_conns(
            &admin, "app"
        )
        .0 == 0),
        "server connections left after exit:\n{}",
        server_activity(&admin, "app")
    );
    assert_eq!(
        psql_ok(&c.primary_url("app"), "SELECT count(*) FROM s"),
        "0"
    );
}
