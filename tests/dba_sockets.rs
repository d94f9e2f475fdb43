//! Sockets and the wildcard database (issue 16), with real clients: psql and pgbench over
//! pgsluice's Unix-domain socket, pgsluice to PostgreSQL over PostgreSQL's socket (a
//! cancel too), TCP keepalives on both sides as configured, and `[databases."*"]`
//! serving databases created on the server with no config change, its pools dropped
//! when idle.

mod common;

use std::process::Command;
use std::time::Duration;

use common::console::console_config;
use common::pg::{Pg, run_async};
use common::{Cluster, Pooler, psql, psql_ok, unique_path, wait_until};

/// A key=value conninfo over the Unix socket in `dir`.
fn socket_conninfo(
    dir: &std::path::Path,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> String {
    format!(
        "host={} port={port} user={user} password={password} dbname={db}",
        dir.display()
    )
}

#[test]
fn psql_and_pgbench_over_the_unix_socket_and_pgsluice_to_postgres_over_its_socket() {
    let cluster = Cluster::start(0);
    common::pgbench::pgbench_init(&cluster);
    let dir = unique_path("sockets");
    std::fs::create_dir_all(&dir).expect("socket dir");
    // Database app reaches PostgreSQL over TCP; database viasocket is app over the
    // cluster's Unix socket (pg_hba: local trust).
    let cfg = cluster
        .pooler_config("transaction", "scram-sha-256", 3)
        .replacen(
            "[general]\n",
            &format!(
                "[general]\nunix_socket_dir = \"{}\"\nunix_socket_mode = \"0700\"\n",
                dir.display()
            ),
            1,
        );
    let cfg = format!(
        "{cfg}\n[databases.viasocket]\ndbname = \"app\"\nprimary = \"{}:{}\"\nquery_timeout = 0.5\n",
        cluster.dir.display(),
        cluster.primary_port
    );
    let pooler = Pooler::start(&cfg);
    let sock = dir.join(format!(".s.PGSQL.{}", pooler.port));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sock)
            .expect("the socket file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "unix_socket_mode");

    // psql -h DIR: the client reached pgsluice over the socket, pgsluice the server over TCP.
    let over_socket = socket_conninfo(&dir, pooler.port, "app", "app_pw", "app");
    let out = psql_ok(
        &over_socket,
        "SELECT current_user, client_addr FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    );
    assert_eq!(out, "app|127.0.0.1");
    // pgsluice to PostgreSQL over the server's socket: no client address on the server.
    let via = socket_conninfo(&dir, pooler.port, "app", "app_pw", "viasocket");
    let out = psql_ok(
        &via,
        "SELECT current_database(), client_addr IS NULL FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    );
    assert_eq!(out, "app|t");
    // A cancel (query_timeout) reaches the server over its socket too.
    let out = psql(&via, "SELECT pg_sleep(30)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("canceling statement"), "{err}");
    // pgbench over pgsluice's socket, into the database reached over PostgreSQL's socket.
    let out = Command::new("timeout")
        .args([
            "-k", "5", "120", "pgbench", "-n", "-c", "4", "-j", "2", "-t", "50",
        ])
        .arg("-h")
        .arg(&dir)
        .args(["-p", &pooler.port.to_string(), "-U", "app", "viasocket"])
        .env("PGPASSWORD", "app_pw")
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("number of failed transactions: 0"),
        "pgbench: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("number of transactions actually processed: 200/200"),
        "{text}"
    );
    // The socket file goes when pgsluice shuts down.
    let mut pooler = pooler;
    pooler.signal("TERM");
    assert!(
        pooler.wait_exit(Duration::from_secs(30)).is_some(),
        "pgsluice exits"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !sock.exists()),
        "{} left behind",
        sock.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The keepalive timer `ss` shows on established TCP sockets matching `filter` of
/// process `pid`, in seconds (one per socket); sampled again while a socket shows another
/// timer (data in flight is timed by its retransmission timer instead).
fn keepalive_timers(filter: &str, pid: u32) -> Vec<u32> {
    let mut last = Vec::new();
    let settled = wait_until(Duration::from_secs(10), || {
        match keepalive_sample(filter, pid) {
            Some(t) => {
                last = t;
                true
            }
            None => false,
        }
    });
    assert!(settled, "sockets of {filter} never showed keepalive timers");
    last
}

fn keepalive_sample(filter: &str, pid: u32) -> Option<Vec<u32>> {
    let out = Command::new("ss")
        .args(["-tnopH", "state", "established", filter])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(|l| {
            let t = l.split("timer:(keepalive,").nth(1)?;
            let secs = t.split(',').next().unwrap_or("");
            // "16sec", "1min16sec" or "987ms".
            if let Some(ms) = secs.strip_suffix("ms") {
                return Some(ms.parse::<u32>().map(|m| m / 1000).unwrap_or(u32::MAX));
            }
            let (min, sec) = match secs.split_once("min") {
                Some((m, s)) => (m.parse::<u32>().unwrap_or(u32::MAX), s),
                None => (0, secs),
            };
            Some(min.saturating_mul(60) + sec.trim_end_matches("sec").parse::<u32>().unwrap_or(0))
        })
        .collect()
}

#[test]
fn tcp_keepalives_are_set_on_client_and_server_sockets() {
    let cluster = Cluster::start(0);
    let cfg = cluster.pooler_config("transaction", "scram-sha-256", 2).replacen(
        "[general]\n",
        "[general]\ntcp_keepalive = true\ntcp_keepidle = 17\ntcp_keepintvl = 5\ntcp_keepcnt = 3\n",
        1,
    );
    let pooler = Pooler::start(&cfg);
    run_async(60, async {
        let c = Pg::connect(&pooler.url("app", "app_pw", "app")).await;
        c.q("SELECT 1").await;
        // Client side: pgsluice's accepted socket; server side: its pool connection.
        let client = keepalive_timers(&format!("( sport = :{} )", pooler.port), pooler.pid());
        let server = keepalive_timers(
            &format!("( dport = :{} )", cluster.primary_port),
            pooler.pid(),
        );
        assert_eq!(client.len(), 1, "one client socket: {client:?}");
        assert!(!server.is_empty(), "a server socket");
        // tcp_keepidle = 17: the first probe is due within 17 s (the OS default is 2 h).
        for t in client.iter().chain(&server) {
            assert!(*t <= 17, "keepalive timer {t} s: {client:?} {server:?}");
        }
        c.close().await;
    });
}

#[test]
fn the_wildcard_database_serves_databases_made_on_the_server_and_drops_idle_pools() {
    let cluster = Cluster::start(0);
    let super_url = cluster.primary_url("postgres");
    let cfg = console_config(&cluster, "transaction", 2, "").replacen(
        "[general]\n",
        "[general]\nserver_idle_timeout = 1\n",
        1,
    );
    let cfg = format!(
        "{cfg}\n[databases.\"*\"]\nprimary = \"127.0.0.1:{}\"\n",
        cluster.primary_port
    );
    let pooler = Pooler::start(&cfg);
    // Three databases created after pgsluice started.
    for db in ["w1", "w2", "w3"] {
        psql_ok(&super_url, &format!("CREATE DATABASE {db} OWNER app"));
    }
    run_async(120, async {
        let admin = Pg::connect(&pooler.url("admin", "admin_pw", "pgsluice")).await;
        let mut clients = Vec::new();
        for db in ["w1", "w2", "w3"] {
            let c = Pg::connect(&pooler.url("app", "app_pw", db)).await;
            assert_eq!(c.one("SELECT current_database()").await, db);
            clients.push(c);
        }
        // psql too, and a configured database still goes to its own table.
        let out = psql_ok(
            &pooler.url("md5user", "md5_pw", "w2"),
            "SELECT current_database()",
        );
        assert_eq!(out, "w2");
        let app = Pg::connect(&pooler.url("app", "app_pw", "app")).await;
        assert_eq!(app.one("SELECT current_database()").await, "app");
        let pools = admin.show("SHOW POOLS").await;
        for db in ["w1", "w2", "w3"] {
            assert!(!pools.with("database", db).is_empty(), "{db} in {pools:#?}");
        }
        let dbs = admin.show("SHOW DATABASES").await;
        assert_eq!(dbs.with("name", "*").len(), 1, "{dbs:#?}");
        // A database that does not exist on the server: the server's own error.
        let e = Pg::try_connect(&pooler.url("app", "app_pw", "nosuchdb"))
            .await
            .err()
            .expect("refused");
        assert_eq!(common::pg::code(&e).as_deref(), Some("3D000"), "{e:?}");
        // Clients gone and server connections idle past server_idle_timeout: the pools
        // of the wildcard's databases are dropped; the configured database's stays.
        for c in clients {
            c.close().await;
        }
        let pools = admin
            .show_until("SHOW POOLS", |r| {
                ["w1", "w2", "w3", "nosuchdb"]
                    .iter()
                    .all(|db| r.with("database", db).is_empty())
            })
            .await;
        for db in ["w1", "w2", "w3", "nosuchdb"] {
            assert!(pools.with("database", db).is_empty(), "{db} in {pools:#?}");
        }
        assert!(!pools.with("database", "app").is_empty(), "{pools:#?}");
        app.close().await;
        admin.close().await;
    });
    // Nothing of pgsluice's holds them: the databases can be dropped.
    for db in ["w1", "w2", "w3"] {
        psql_ok(&super_url, &format!("DROP DATABASE {db}"));
    }
}
