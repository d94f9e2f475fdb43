//! Routing, second round, against a real primary and two streaming replicas: extended-
//! protocol reads survive a replica stopped under them, read-only endpoints (session
//! mode, pg_dump, failover, the primary fallback), function volatility read from the
//! catalog and refreshed on RELOAD, the per-node routing statistics, and read-your-writes
//! under a `REPEATABLE READ` default pgsluice cannot see. Where a
//! statement ran is read from the nodes (statement logs, `inet_server_port()`).

mod common;
mod routing_util;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Pooler, psql, psql_ok, run_async, wait_until};
use routing_util::{log_statements, nodes_that_ran, psql_session, routing_config, wait_read_set};

/// tokio-postgres readers (a statement prepared once, and one prepared per query) and
/// psycopg readers with server-side prepared statements run while replica1 is stopped
/// (immediate) and started again: no read fails, and replica1 serves reads before and
/// after, none while it is down.
#[test]
fn extended_protocol_reads_survive_a_replica_stop() {
    let c = Cluster::start(2);
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let stopped = c.replica_ports[0].to_string();
    let (stop_at, start_at, run_for) = (
        Duration::from_secs(2),
        Duration::from_secs(5),
        Duration::from_secs(8),
    );
    let t0 = Instant::now();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/prepared_readers.py");
    let py = Command::new("timeout")
        .args(["-k", "5", "60", "python3"])
        .arg(&script)
        .arg(&url)
        .arg(run_for.as_secs().to_string())
        .arg("4")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run prepared_readers.py");
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || run_async(60, tokio_reader(url, w, t0, run_for)))
        })
        .collect();
    std::thread::sleep(stop_at.saturating_sub(t0.elapsed()));
    c.stop_node("replica1");
    let stopped_at = t0.elapsed();
    std::thread::sleep(start_at.saturating_sub(t0.elapsed()));
    c.start_node("replica1");
    let started_at = t0.elapsed();

    let mut served = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        let (s, e) = w.join().expect("worker");
        served.extend(s);
        errors.extend(e);
    }
    let out = py.wait_with_output().expect("prepared_readers.py");
    let py_out = String::from_utf8_lossy(&out.stdout);
    let during = served
        .iter()
        .filter(|(t, p)| {
            *t > stopped_at + Duration::from_millis(500) && *t < started_at && *p == stopped
        })
        .count();
    let by_port = served.iter().fold(HashMap::<&str, u32>::new(), |mut m, s| {
        *m.entry(s.1.as_str()).or_default() += 1;
        m
    });
    eprintln!(
        "extended-protocol readers, replica1 ({stopped}) stopped at {stopped_at:?}, started \
         at {started_at:?}: tokio-postgres reads {} failed {} {by_port:?}; {}",
        served.len(),
        errors.len(),
        py_out.trim()
    );
    assert!(errors.is_empty(), "tokio-postgres reads failed: {errors:?}");
    assert!(
        out.status.success() && py_out.contains("failures=0"),
        "psycopg prepared readers failed ({}):\n{py_out}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(during, 0, "reads were served by the stopped replica");
    assert!(
        served.iter().any(|(t, p)| *t < stopped_at && *p == stopped),
        "replica1 served nothing before it stopped: {by_port:?}"
    );
}

/// One tokio-postgres reader: alternately a statement prepared once (Bind/Execute only)
/// and a query prepared anew each time, each read checked. Returns (time, port) per read
/// and the failures.
async fn tokio_reader(
    url: String,
    w: i32,
    t0: Instant,
    run_for: Duration,
) -> (Vec<(Duration, String)>, Vec<String>) {
    let (client, _rx) = common::pg_connect(&url).await;
    let stmt = client
        .prepare("SELECT inet_server_port()::text, $1::int + 1")
        .await
        .expect("prepare");
    let mut served = Vec::new();
    let mut errors = Vec::new();
    let mut i = w * 1_000_000;
    while t0.elapsed() < run_for {
        i += 1;
        let r = if i % 2 == 0 {
            client.query_one(&stmt, &[&i]).await
        } else {
            client
                .query_one("SELECT inet_server_port()::text, $1::int + 1", &[&i])
                .await
        };
        match r {
            Ok(row) if row.get::<_, i32>(1) == i + 1 => {
                served.push((t0.elapsed(), row.get::<_, String>(0)));
            }
            Ok(row) => errors.push(format!("wrong answer {:?} for {i}", row.get::<_, i32>(1))),
            Err(e) => errors.push(format!("{:?}: {e}", t0.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    (served, errors)
}

/// Config with two read-only endpoints of `app` in session mode, one with the primary
/// as a fallback.
fn endpoint_config(c: &Cluster) -> String {
    routing_config(c, "")
        + "\n[databases.app_ro]\nreplicas_of = \"app\"\npool_mode = \"session\"\n\
           \n[databases.app_ro_fb]\nreplicas_of = \"app\"\npool_mode = \"session\"\n\
           primary_fallback = true\n"
}

/// A read-only endpoint in session mode: sessions run on replicas (both, balanced),
/// refuse writes, serve pg_dump; when a replica stops, new sessions go to the other;
/// with no replica left, the endpoint says so and the one with `primary_fallback`
/// serves its sessions from the primary, read-only.
#[test]
fn read_only_endpoint_in_session_mode() {
    let c = Cluster::start(2);
    psql_ok(
        &c.primary_url("app"),
        "CREATE TABLE dumpme_ro (id int); INSERT INTO dumpme_ro VALUES (1); \
         GRANT ALL ON dumpme_ro TO app",
    );
    c.wait_replicas_caught_up();
    log_statements(&c);
    let pooler = Pooler::start(&endpoint_config(&c));
    let app = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &app);
    let ro = pooler.url("app", "app_pw", "app_ro");
    let replicas: HashSet<String> = c.replica_ports.iter().map(|p| p.to_string()).collect();

    // Each session is served by a replica; sessions spread over both.
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let out = psql_session(
            &ro,
            &[
                "SELECT inet_server_port()".to_string(),
                "SELECT inet_server_port()".to_string(),
            ],
            &[],
        );
        let ports: Vec<&str> = out.lines().collect();
        assert!(
            ports.len() == 2 && ports[0] == ports[1] && replicas.contains(ports[0]),
            "a session-mode endpoint session: {out:?}"
        );
        seen.insert(ports[0].to_string());
    }
    assert_eq!(
        seen, replicas,
        "sessions were not spread over both replicas"
    );

    // Writes are refused; the route cannot be forced to the primary.
    let out = psql_session(
        &ro,
        &[
            "INSERT INTO dumpme_ro VALUES (2)".to_string(),
            "SET pgsluice.route = primary".to_string(),
            "SELECT count(*) FROM dumpme_ro".to_string(),
        ],
        &[],
    );
    assert!(out.contains("read-only transaction"), "{out}");
    assert!(
        out.contains("cannot be changed on a read-only endpoint"),
        "{out}"
    );
    assert!(out.starts_with("1\n"), "{out}");

    // pg_dump from the endpoint runs on a replica.
    let dump = Command::new("timeout")
        .args(["-k", "5", "60", "/usr/lib/postgresql/15/bin/pg_dump"])
        .args(["-t", "dumpme_ro", "-d", &ro])
        .env_remove("PGPASSWORD")
        .output()
        .expect("run pg_dump");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success() && text.contains("CREATE TABLE public.dumpme_ro"),
        "pg_dump through the endpoint failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let lock = "dumpme_ro IN ACCESS SHARE MODE";
    wait_until(Duration::from_secs(5), || {
        !nodes_that_ran(&c, lock).is_empty()
    });
    let ran = nodes_that_ran(&c, lock);
    assert!(
        ran.len() == 1 && ran[0].starts_with("replica"),
        "pg_dump ran on {ran:?}"
    );

    // Failover: replica1 stops; new sessions go to replica2.
    c.stop_node("replica1");
    let other = c.replica_ports[1].to_string();
    for _ in 0..6 {
        let out = psql(&ro, "SELECT inet_server_port()");
        let port = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            port,
            other,
            "an endpoint session with replica1 down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // No replica left: the endpoint refuses, its fallback twin uses the primary read-only.
    c.stop_node("replica2");
    let mut last = String::new();
    let refused = wait_until(Duration::from_secs(15), || {
        let out = psql(&ro, "SELECT inet_server_port()");
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        !out.status.success()
    });
    assert!(
        refused && last.contains("no replica"),
        "the endpoint without replicas: {last}"
    );
    let fb = pooler.url("app", "app_pw", "app_ro_fb");
    let out = psql_session(
        &fb,
        &[
            "SELECT inet_server_port()".to_string(),
            "INSERT INTO dumpme_ro VALUES (3)".to_string(),
        ],
        &[],
    );
    assert!(
        out.starts_with(&format!("{}\n", c.primary_port)),
        "the fallback endpoint without replicas: {out}"
    );
    assert!(out.contains("read-only transaction"), "{out}");
}

/// A function created after pgsluice started is looked up (a query naming a function the
/// catalog copy lacks has it read again) and runs on a replica (STABLE); made VOLATILE, it goes back to
/// the primary after a RELOAD (the timer is an hour here).
#[test]
fn function_volatility_follows_the_catalog() {
    let c = Cluster::start(2);
    let pooler = Pooler::start(&routing_config(&c, "function_refresh_interval = 3600"));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    psql_ok(
        &c.primary_url("app"),
        "CREATE FUNCTION late_f() RETURNS int LANGUAGE sql STABLE AS 'SELECT 7'",
    );
    c.wait_replicas_caught_up();
    let primary = c.primary_port.to_string();
    let q = "SELECT late_f(), inet_server_port()";
    // Whether the first call finds the name depends on when the monitor last read the
    // catalog: unknown, it runs on the primary and has the catalog read again.
    let first = format!("7|{primary}");
    let mut last = String::new();
    let on_replica = wait_until(Duration::from_secs(10), || {
        last = psql_ok(&url, q);
        last != first
    });
    assert!(
        on_replica,
        "a STABLE function never reached a replica: {last}"
    );

    psql_ok(&c.primary_url("app"), "ALTER FUNCTION late_f() VOLATILE");
    c.wait_replicas_caught_up();
    pooler.signal("HUP");
    let back = wait_until(Duration::from_secs(10), || psql_ok(&url, q) == first);
    assert!(
        back,
        "a function made VOLATILE still runs on a replica after RELOAD"
    );
    for _ in 0..10 {
        assert_eq!(
            psql_ok(&url, q),
            first,
            "a VOLATILE function left the primary"
        );
    }
}

/// SHOW NODES and /metrics count, per node, the reads routed, the read-your-writes probes,
/// and the units sent to the primary by reason.
#[test]
fn routing_statistics_per_node() {
    let c = Cluster::start(2);
    psql_ok(
        &c.primary_url("app"),
        "CREATE TABLE st (id int); GRANT ALL ON st TO app; \
         CREATE FUNCTION vol() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    );
    c.wait_replicas_caught_up();
    let http = common::free_port();
    let config = routing_config(&c, "").replacen(
        "[auth]\ntype = \"scram-sha-256\"\n",
        "[auth]\ntype = \"scram-sha-256\"\nadmin_users = [\"admin\"]\n",
        1,
    ) + &format!(
        "\n[[users]]\nname = \"admin\"\npassword = \"admin_pw\"\n\n[admin]\nhttp_listen_addr = \"127.0.0.1:{http}\"\n"
    );
    let pooler = Pooler::start(&config);
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let admin = pooler.url("admin", "admin_pw", "pgsluice");
    let before = show_nodes(&admin);
    for _ in 0..2 {
        psql_ok(&url, "INSERT INTO st VALUES (1)");
    }
    for _ in 0..3 {
        psql_ok(&url, "SELECT vol()");
    }
    for _ in 0..4 {
        psql_ok(&url, "/* pgsluice: primary */ SELECT 1");
    }
    // A write, then reads in the same session: the first read probes a replica.
    let out = psql_session(
        &url,
        &[
            "INSERT INTO st VALUES (2)".to_string(),
            "SELECT count(*) FROM st".to_string(),
            "SELECT count(*) FROM st".to_string(),
        ],
        &[],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["INSERT 0 1", "3", "3"],
        "{out}"
    );
    let after = show_nodes(&admin);
    let delta = |node: usize, col: &str| after[node][col] - before[node][col];
    assert!(delta(0, "primary_write") >= 3, "{after:?}");
    assert_eq!(delta(0, "primary_function"), 3, "{after:?}");
    assert_eq!(delta(0, "primary_forced"), 4, "{after:?}");
    // Each probe either found the write (a read on the replica) or missed (the read went
    // to the primary as ryw_timeout); whether it hits depends on replay timing.
    let probes = delta(1, "ryw_probes") + delta(2, "ryw_probes");
    let misses = delta(1, "ryw_probe_misses") + delta(2, "ryw_probe_misses");
    let reads = delta(1, "reads") + delta(2, "reads");
    assert!(probes >= 1, "no read-your-writes probe: {after:?}");
    assert!(reads + misses >= probes && misses <= probes, "{after:?}");
    assert_eq!(delta(0, "primary_ryw_timeout"), misses, "{after:?}");

    let (status, body) = common::console::http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    // One sample per node and reason; the primary's say what SHOW NODES says.
    let metric = |name: &str, node: &str, reason: Option<&str>| -> Option<f64> {
        let head = format!("{name}{{database=\"app\",node=\"{node}\",");
        body.lines()
            .filter(|l| l.starts_with(&head))
            .find(|l| reason.is_none_or(|r| l.contains(&format!("reason=\"{r}\""))))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    for (reason, col) in [
        ("write", "primary_write"),
        ("function", "primary_function"),
        ("lag", "primary_lag"),
        ("ryw_timeout", "primary_ryw_timeout"),
        ("no_replica", "primary_no_replica"),
        ("forced", "primary_forced"),
    ] {
        let m = metric("pgsluice_node_primary_units_total", "0", Some(reason));
        assert_eq!(m, Some(after[0][col] as f64), "{reason}:\n{body}");
    }
    for node in ["1", "2"] {
        for name in [
            "pgsluice_node_ryw_probes_total",
            "pgsluice_node_ryw_probe_misses_total",
            "pgsluice_node_reads_total",
        ] {
            assert!(metric(name, node, None).is_some(), "no {name}:\n{body}");
        }
    }
}

/// SHOW NODES of database app: per node, its counters by column name (`#` dropped).
fn show_nodes(admin: &str) -> Vec<HashMap<String, i64>> {
    // Unaligned, with the header (psql_ok's -t would drop it).
    let headed = Command::new("/usr/bin/psql")
        .args(["-X", "-A", "-c", "SHOW NODES", admin])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql");
    let text = String::from_utf8_lossy(&headed.stdout);
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split('|')
        .map(|h| h.trim_start_matches('#').to_string())
        .collect();
    lines
        .map(|l| l.split('|').collect::<Vec<_>>())
        .filter(|l| l.first() == Some(&"app"))
        .map(|l| {
            header
                .iter()
                .zip(l)
                .filter_map(|(h, v)| v.parse::<i64>().ok().map(|v| (h.clone(), v)))
                .collect()
        })
        .collect()
}

/// The read-your-writes probe sent ahead of a read runs in a transaction of its own, so a
/// read whose transaction is `REPEATABLE READ` by the database's default (which pgsluice
/// does not see) takes its snapshot after the probe saw the write, not before: a writer
/// reading back at once never misses its row, and its reads still go to the replica that
/// keeps up.
#[test]
fn a_repeatable_read_default_gets_no_stale_read_behind_a_probe() {
    let c = Cluster::start_with_delay(2, 2);
    psql_ok(
        &c.primary_url("app"),
        "ALTER DATABASE app SET synchronous_commit = on; \
         ALTER DATABASE app SET default_transaction_isolation = 'repeatable read'; \
         CREATE TABLE ryw_rr (id int PRIMARY KEY); GRANT ALL ON ryw_rr TO app",
    );
    // Every node's new backends take the default (replica2 replays 2 s late).
    for port in c.replica_ports.iter() {
        let direct = common::url(*port, "postgres", "", "app");
        wait_until(Duration::from_secs(10), || {
            psql_ok(&direct, "SHOW default_transaction_isolation") == "repeatable read"
        });
    }
    let fast = c.replica_ports[0].to_string();
    let pooler = Pooler::start(&routing_config(&c, "max_replica_lag = 30"));
    let url = pooler.url("app", "app_pw", "app");
    wait_until(Duration::from_secs(10), || {
        psql_ok(
            &url,
            "SELECT count(*) FROM pg_class WHERE relname = 'ryw_rr'",
        ) == "1"
    });
    wait_read_set(&c, &url);
    run_async(120, async move {
        let (writer, _w) = common::pg_connect(&url).await;
        let isolation = common::sq1(&writer, "SHOW transaction_isolation").await;
        assert_eq!(
            isolation, "repeatable read",
            "the database's default applies"
        );
        let rounds = 300;
        let (mut stale, mut on_fast) = (Vec::new(), 0);
        for i in 0..rounds {
            writer
                .simple_query(&format!("INSERT INTO ryw_rr VALUES ({i})"))
                .await
                .expect("insert");
            let answer = writer
                .simple_query(&format!(
                    "SELECT count(*), inet_server_port() FROM ryw_rr WHERE id = {i}"
                ))
                .await
                .expect("select");
            let row = answer
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                    _ => None,
                })
                .expect("a row");
            let port = row.get(1).unwrap_or_default().to_string();
            if row.get(0) != Some("1") {
                stale.push((i, port.clone()));
            }
            on_fast += u32::from(port == fast);
        }
        eprintln!(
            "repeatable read: {rounds} rounds, stale {stale:?}, on the fast replica {on_fast}"
        );
        assert!(stale.is_empty(), "stale reads: {stale:?}");
        assert!(
            on_fast * 2 >= rounds,
            "only {on_fast} of {rounds} reads on the replica that keeps up"
        );
    });
}
