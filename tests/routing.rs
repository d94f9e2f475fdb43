//! Read/write routing and read-your-writes, against a real primary and two streaming
//! replicas. Where a statement ran is read from the nodes themselves: every node logs
//! every statement (`log_statement = all`), and each statement under test carries a
//! unique comment tag.

mod common;
mod routing_util;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, Pooler, psql_ok, run_async, wait_until};
use routing_util::{log_statements, nodes_that_ran, psql_session, routing_config, wait_read_set};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Primary,
    Replica,
}

/// Schema the statements below use; created on the primary, replayed by the replicas.
const SCHEMA: &str = "
CREATE TABLE t (id int PRIMARY KEY, v int);
INSERT INTO t SELECT g, g FROM generate_series(1, 10) g;
CREATE TABLE t3 (a int);
CREATE SEQUENCE s;
CREATE FUNCTION my_func() RETURNS int LANGUAGE sql AS 'INSERT INTO t3 VALUES (1) RETURNING a';
CREATE FUNCTION my_pure() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1';
CREATE FUNCTION my_reader(x int) RETURNS int LANGUAGE sql STABLE AS 'SELECT x';
CREATE FUNCTION my_srf() RETURNS SETOF int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION my_stable(x int) RETURNS int LANGUAGE sql STABLE AS 'SELECT x + 1';
CREATE FUNCTION my_over(x int) RETURNS int LANGUAGE sql STABLE AS 'SELECT x';
CREATE FUNCTION my_over(x text) RETURNS text LANGUAGE sql AS 'SELECT x';
CREATE SCHEMA s2;
GRANT USAGE ON SCHEMA s2 TO app;
CREATE FUNCTION s2.f2() RETURNS int LANGUAGE sql STABLE AS 'SELECT 2';
CREATE FUNCTION public.dual() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION s2.dual() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 2';
CREATE FUNCTION my_nextval_reader() RETURNS bigint LANGUAGE plpgsql STABLE
  AS 'BEGIN RETURN nextval(''s''); END';
GRANT ALL ON ALL TABLES IN SCHEMA public TO app;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO app;
";

/// One case: commands run in one session; `TAG` in the marked one is replaced by a
/// unique comment, and that statement must run on `want`.
fn cases() -> Vec<(Want, Vec<&'static str>)> {
    use Want::*;
    let one = |w, s| (w, vec![s]);
    vec![
        // Plain reads.
        one(Replica, "TAG SELECT 1"),
        one(Replica, "TAG select * from t where id = 1"),
        one(Replica, "TAG SELECT count(*) FROM t"),
        one(Replica, "TAG SELECT max(v), min(v), avg(v), sum(v) FROM t"),
        one(Replica, "TAG VALUES (1), (2)"),
        one(Replica, "TAG TABLE t"),
        one(Replica, "TAG SHOW search_path"),
        one(
            Replica,
            "TAG SELECT now(), current_timestamp, clock_timestamp()",
        ),
        one(
            Replica,
            "TAG SELECT lower('A'), upper('b'), length('x'), 'a' || 'b'",
        ),
        one(
            Replica,
            "TAG SELECT coalesce(NULL, 1), nullif(1, 2), greatest(1, 2)",
        ),
        one(Replica, "TAG SELECT jsonb_build_object('a', 1) -> 'a'"),
        one(
            Replica,
            "TAG SELECT '{\"a\": 1}'::jsonb ->> 'a', to_jsonb(1)",
        ),
        one(
            Replica,
            "TAG WITH x AS (SELECT id FROM t) SELECT count(*) FROM x",
        ),
        one(Replica, "TAG SELECT * FROM generate_series(1, 3)"),
        one(Replica, "TAG SELECT * FROM t a JOIN t b ON a.id = b.id"),
        one(
            Replica,
            "TAG SELECT id FROM t WHERE id IN (SELECT id FROM t)",
        ),
        one(Replica, "TAG SELECT id FROM t UNION SELECT id FROM t"),
        one(Replica, "TAG SELECT EXISTS (SELECT 1 FROM t)"),
        one(
            Replica,
            "TAG SELECT pg_is_in_recovery(), inet_server_port()",
        ),
        one(Replica, "TAG SELECT my_reader(1)"),
        one(Replica, "TAG SELECT row_number() OVER () FROM t"),
        one(
            Replica,
            "TAG SELECT string_agg(id::text, ','), array_agg(id) FROM t",
        ),
        one(
            Replica,
            "TAG SELECT date_trunc('day', now()), to_char(now(), 'YYYY')",
        ),
        one(Replica, "TAG SELECT pg_catalog.now()"),
        one(Replica, "TAG EXPLAIN SELECT * FROM t"),
        one(
            Replica,
            "TAG SELECT CASE WHEN v > 5 THEN 'big' END FROM t ORDER BY id LIMIT 2",
        ),
        one(
            Replica,
            "TAG SELECT current_setting('search_path'), pg_sleep(0)",
        ),
        one(Replica, "TAG SELECT 1; SELECT 2"),
        one(Replica, "TAG BEGIN READ ONLY; SELECT 1; COMMIT"),
        one(Replica, "/* pgsluice: replica */ TAG SELECT my_pure()"),
        // Functions the catalog vouches for (IMMUTABLE, STABLE), not configured.
        one(Replica, "TAG SELECT my_pure()"),
        one(Replica, "TAG SELECT public.my_pure()"),
        one(Replica, "TAG SELECT my_stable(1)"),
        one(Replica, "TAG SELECT * FROM t WHERE v = my_stable(id)"),
        one(Replica, "TAG SELECT s2.f2()"),
        (Replica, vec!["SET search_path = s2", "TAG SELECT dual()"]),
        // Read-only transactions, in separate statements.
        (Replica, vec!["BEGIN READ ONLY", "TAG SELECT 1", "COMMIT"]),
        (
            Replica,
            vec!["START TRANSACTION READ ONLY", "TAG SELECT 1", "COMMIT"],
        ),
        (
            Replica,
            vec![
                "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
                "BEGIN",
                "TAG SELECT 1",
                "COMMIT",
            ],
        ),
        (
            Replica,
            vec![
                "SET default_transaction_read_only = on",
                "BEGIN",
                "TAG SELECT 1",
                "COMMIT",
            ],
        ),
        // Session hints.
        (
            Replica,
            vec!["SET pgsluice.route = replica", "TAG SELECT my_pure()"],
        ),
        (
            Replica,
            vec![
                "SET pgsluice.route = primary",
                "RESET pgsluice.route",
                "TAG SELECT 1",
            ],
        ),
        // Writes.
        one(
            Primary,
            "TAG INSERT INTO t VALUES (100, 1) ON CONFLICT DO NOTHING",
        ),
        one(Primary, "TAG UPDATE t SET v = v WHERE id = 1"),
        one(Primary, "TAG DELETE FROM t WHERE id = -1"),
        one(
            Primary,
            "TAG INSERT INTO t VALUES (101, 1) ON CONFLICT DO NOTHING RETURNING inet_server_port()",
        ),
        // The traps: SELECTs that write or lock.
        one(Primary, "TAG SELECT nextval('s')"),
        one(Primary, "TAG SELECT setval('s', 10)"),
        one(Primary, "TAG SELECT (SELECT nextval('s'))"),
        one(
            Primary,
            "TAG SELECT count(*) FROM t WHERE id = (SELECT nextval('s'))",
        ),
        one(Primary, "TAG SELECT * FROM t FOR UPDATE"),
        one(Primary, "TAG SELECT * FROM t FOR SHARE"),
        one(Primary, "TAG SELECT * FROM t FOR NO KEY UPDATE"),
        one(Primary, "TAG SELECT * FROM t FOR KEY SHARE SKIP LOCKED"),
        one(
            Primary,
            "TAG WITH x AS (DELETE FROM t WHERE id = -1 RETURNING *) SELECT * FROM x",
        ),
        one(
            Primary,
            "TAG WITH x AS (UPDATE t SET v = v WHERE id = 1 RETURNING *) SELECT count(*) FROM x",
        ),
        one(Primary, "TAG SELECT id INTO TEMP tmp_into FROM t"),
        one(Primary, "TAG SELECT my_func()"),
        one(Primary, "TAG SELECT * FROM my_srf()"),
        // Overloaded with a VOLATILE member; a name that is VOLATILE on the default path.
        one(Primary, "TAG SELECT my_over(1)"),
        one(Primary, "TAG SELECT dual()"),
        (
            Primary,
            vec!["SET search_path = public, s2", "TAG SELECT dual()"],
        ),
        one(Primary, "TAG SELECT s2.nope()"),
        one(Primary, "TAG SELECT 1; UPDATE t SET v = v WHERE id = 1"),
        one(Primary, "TAG SELECT pg_advisory_xact_lock(1)"),
        one(Primary, "TAG SELECT set_config('x.y', '1', true)"),
        one(Primary, "TAG SELECT txid_current()"),
        one(Primary, "TAG SELECT pg_notify('ch', 'x')"),
        one(Primary, "TAG SELECT lo_create(0)"),
        one(Primary, "TAG SELEC 1"),
        one(Primary, "TAG SELECT FROM WHERE"),
        one(
            Primary,
            "TAG EXPLAIN ANALYZE UPDATE t SET v = v WHERE id = 1",
        ),
        one(Primary, "TAG CREATE TABLE IF NOT EXISTS t2 (a int)"),
        one(Primary, "TAG TRUNCATE t3"),
        one(Primary, "TAG ANALYZE t"),
        one(Primary, "TAG DO $$ BEGIN PERFORM 1; END $$"),
        one(Primary, "TAG LISTEN ch"),
        one(Primary, "TAG NOTIFY ch"),
        one(Primary, "TAG BEGIN; SELECT 1; COMMIT"),
        one(Primary, "/* pgsluice: primary */ TAG SELECT 1"),
        // Transactions stay on one node.
        (Primary, vec!["BEGIN", "TAG SELECT 1", "COMMIT"]),
        (
            Primary,
            vec!["START TRANSACTION", "TAG SELECT count(*) FROM t", "COMMIT"],
        ),
        (Primary, vec!["BEGIN READ WRITE", "TAG SELECT 1", "COMMIT"]),
        // Session hint.
        (
            Primary,
            vec!["SET pgsluice.route = primary", "TAG SELECT 1"],
        ),
    ]
}

#[test]
fn statements_go_where_they_can_run() {
    let c = Cluster::start(2);
    psql_ok(&c.primary_url("app"), SCHEMA);
    c.wait_replicas_caught_up();
    log_statements(&c);
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);

    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, (want, commands)) in cases.iter().enumerate() {
        let tag = format!("/* rt-{i} */");
        let commands: Vec<String> = commands.iter().map(|c| c.replace("TAG", &tag)).collect();
        let output = psql_session(&url, &commands, &[]);
        // Logs are written as statements run; give the writes a moment.
        let mut ran = Vec::new();
        wait_until(Duration::from_secs(5), || {
            ran = nodes_that_ran(&c, &tag);
            !ran.is_empty()
        });
        let ok = match want {
            Want::Primary => ran == ["primary"],
            Want::Replica => ran.len() == 1 && ran[0].starts_with("replica"),
        };
        if !ok {
            failures.push(format!(
                "{commands:?}: want {want:?}, ran on {ran:?}; psql said {output:?}"
            ));
        }
    }
    // The startup option forces a route per connection.
    let tag = "/* rt-startup */";
    psql_session(
        &url,
        &[format!("{tag} SELECT 1")],
        &[("PGOPTIONS", "-c pgsluice.route=primary")],
    );
    wait_until(Duration::from_secs(5), || {
        !nodes_that_ran(&c, tag).is_empty()
    });
    if nodes_that_ran(&c, tag) != ["primary"] {
        failures.push(format!(
            "startup option: ran on {:?}",
            nodes_that_ran(&c, tag)
        ));
    }
    assert!(
        failures.is_empty(),
        "{} misrouted:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn pgsluice_settings_are_answered_not_forwarded() {
    let c = Cluster::start(1);
    log_statements(&c);
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    let out = psql_session(
        &url,
        &[
            "SET pgsluice.route = primary".into(),
            "SET pgsluice.route = sideways".into(),
            "SET pgsluice.min_lsn = 'not an lsn'".into(),
            "SELECT 'after'".into(),
        ],
        &[],
    );
    assert!(out.contains("invalid value for pgsluice.route"), "{out}");
    assert!(out.contains("invalid LSN"), "{out}");
    assert!(out.contains("after"), "{out}");
    assert!(
        nodes_that_ran(&c, "pgsluice.route").is_empty(),
        "a pgsluice setting reached a server"
    );
}

/// The write-then-read target: one replica replays within milliseconds, one applies WAL two seconds
/// late (and stays in the read set, `max_replica_lag = 30`). A session inserts a row and
/// reads it back at once, 1,000 times: it sees its row every time (0 stale reads), and at
/// least half of those reads are served by a replica (the one that keeps up, found by a
/// read-your-writes probe). A session that never writes reads from replicas only, the
/// lagging one included; the writer reads there again once it has caught up.
#[test]
fn read_your_writes_under_real_lag() {
    let c = Cluster::start_with_delay(2, 2);
    // The test clusters run with synchronous_commit = off, which ships WAL only when the
    // WAL writer flushes it (every 200 ms): no replica would be under 10 ms behind. With
    // it on, replica1 replays a commit within a millisecond or so.
    psql_ok(
        &c.primary_url("app"),
        "ALTER DATABASE app SET synchronous_commit = on; \
         CREATE TABLE ryw (id int PRIMARY KEY, who text); GRANT ALL ON ryw TO app",
    );
    let fast = c.replica_ports[0].to_string();
    let lagging = c.replica_ports[1].to_string();
    let pooler = Pooler::start(&routing_config(&c, "max_replica_lag = 30"));
    let url = pooler.url("app", "app_pw", "app");
    wait_until(Duration::from_secs(10), || {
        psql_ok(&url, "SELECT count(*) FROM pg_class WHERE relname = 'ryw'") == "1"
    });
    wait_read_set(&c, &url);
    let primary = c.primary_port.to_string();
    run_async(180, async move {
        let (reader, _r) = common::pg_connect(&url).await;
        let (writer, _w) = common::pg_connect(&url).await;
        // Before any write: reads reach the lagging replica.
        let mut ports = HashSet::new();
        for _ in 0..20 {
            ports.insert(common::sq1(&reader, "SELECT inet_server_port()").await);
        }
        assert!(
            ports.contains(&lagging),
            "the reader never reached the lagging replica: {ports:?}"
        );

        let rounds = 1000;
        let mut served = std::collections::HashMap::<String, u32>::new();
        let mut reader_served = std::collections::HashMap::<String, u32>::new();
        let mut stale = Vec::new();
        let t0 = Instant::now();
        for i in 0..rounds {
            writer
                .execute("INSERT INTO ryw VALUES ($1, 'w')", &[&i])
                .await
                .expect("insert");
            let row = writer
                .query_one(
                    "SELECT count(*), inet_server_port()::text FROM ryw WHERE id = $1",
                    &[&i],
                )
                .await
                .expect("select");
            let n: i64 = row.get(0);
            let port: String = row.get(1);
            if n != 1 {
                stale.push((i, port.clone()));
            }
            *served.entry(port).or_default() += 1;
            // The never-writing session, interleaved.
            let port = common::sq1(&reader, "SELECT inet_server_port()").await;
            *reader_served.entry(port).or_default() += 1;
        }
        let on_replica =
            served.get(&fast).copied().unwrap_or(0) + served.get(&lagging).copied().unwrap_or(0);
        eprintln!(
            "write-then-read: {rounds} rounds in {:?}; stale reads {}; writer's reads on a \
             replica {on_replica} (fast {fast}, lagging {lagging}, primary {primary}: \
             {served:?}); never-writing reader: {reader_served:?}",
            t0.elapsed(),
            stale.len(),
        );
        assert!(
            stale.is_empty(),
            "stale reads of the session's own writes: {stale:?}"
        );
        assert!(
            !served.contains_key(&lagging),
            "a read went to the replica that had not replayed the write: {served:?}"
        );
        assert!(
            on_replica * 2 >= rounds as u32,
            "only {on_replica} of {rounds} of the writer's reads on a replica: {served:?}"
        );
        assert!(
            !reader_served.contains_key(&primary),
            "the never-writing session was sent to the primary: {reader_served:?}"
        );

        // Once the lagging replica replays the last write, the writer reads there again.
        let start = Instant::now();
        let mut back = false;
        while start.elapsed() < Duration::from_secs(20) {
            let row = writer
                .query_one("SELECT inet_server_port()::text, count(*) FROM ryw", &[])
                .await
                .expect("select");
            let n: i64 = row.get(1);
            if row.get::<_, String>(0) == lagging {
                assert_eq!(n, 1000, "the lagging replica served a stale read");
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            back,
            "the writer never read from the caught-up replica; served: {served:?}"
        );
    });
}

/// A write through one connection reports its LSN (`pgsluice.write_lsn`); another
/// connection that says `SET pgsluice.min_lsn` to it reads the write, even though its
/// reads otherwise go to a replica that is seconds behind.
#[test]
fn causal_token_carries_a_write_to_another_connection() {
    let c = Cluster::start_with_delay(1, 3);
    let pooler = Pooler::start(&routing_config(
        &c,
        "report_write_lsn = true\nmax_replica_lag = 60",
    ));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/causal_check.py");
    let out = Command::new("timeout")
        .args(["-k", "5", "60", "python3"])
        .arg(&script)
        .arg(&url)
        .arg(c.replica_ports[0].to_string())
        .output()
        .expect("run causal_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("causal_check OK"),
        "causal_check.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A statement a replica refuses as a write (25006) is retried on the primary: the
/// client gets its answer, not an error.
#[test]
fn replica_refusal_is_retried_on_the_primary() {
    let c = Cluster::start(1);
    psql_ok(&c.primary_url("app"), SCHEMA);
    c.wait_replicas_caught_up();
    log_statements(&c);
    // Misconfigured: my_func writes, but is listed as read-only.
    let config = c
        .pooler_config("transaction", "scram-sha-256", 4)
        .to_string()
        + "\n[routing]\nread_only_functions = [\"my_func\"]\n";
    let pooler = Pooler::start(&config);
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let tag = "/* retry-1 */";
    let out = psql_ok(&url, &format!("{tag} SELECT my_func(), inet_server_port()"));
    assert_eq!(out, format!("1|{}", c.primary_port), "{out}");
    let ran = nodes_that_ran(&c, tag);
    assert_eq!(
        ran,
        ["primary", "replica1"],
        "tried on the replica, then the primary"
    );
}

/// Reads keep working while a replica is stopped mid-run; it rejoins once started.
#[test]
fn replica_stopped_mid_run_then_rejoins() {
    let c = Cluster::start(2);
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let stopped = c.replica_ports[0].to_string();
    let stop_at = Duration::from_millis(1500);
    let start_at = Duration::from_millis(3500);
    let run_for = Duration::from_secs(6);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                run_async(60, async move {
                    let (client, _rx) = common::pg_connect(&url).await;
                    let mut served = Vec::new();
                    let mut errors = Vec::new();
                    while t0.elapsed() < run_for {
                        match client.simple_query("SELECT inet_server_port()").await {
                            Ok(rows) => {
                                let port = rows.iter().find_map(|m| match m {
                                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                                        r.get(0).map(str::to_string)
                                    }
                                    _ => None,
                                });
                                served.push((t0.elapsed(), port.unwrap_or_default()));
                            }
                            Err(e) => errors.push(format!("{:?}: {e}", t0.elapsed())),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    (served, errors)
                })
            })
        })
        .collect();
    std::thread::sleep(stop_at.saturating_sub(t0.elapsed()));
    c.stop_node("replica1");
    let stopped_at = t0.elapsed();
    std::thread::sleep(start_at.saturating_sub(t0.elapsed()));
    c.start_node("replica1");
    let mut all_served = Vec::new();
    let mut all_errors = Vec::new();
    for w in workers {
        let (served, errors) = w.join().expect("worker");
        all_served.extend(served);
        all_errors.extend(errors);
    }
    assert!(
        all_errors.is_empty(),
        "reads failed while a replica went away: {all_errors:?}"
    );
    let during = all_served
        .iter()
        .filter(|(t, p)| {
            *t > stopped_at + Duration::from_millis(200) && *t < start_at && *p == stopped
        })
        .count();
    assert_eq!(during, 0, "reads were served by the stopped replica");
    // Rejoin: the restarted replica serves reads again.
    let mut seen = HashSet::new();
    let back = wait_until(Duration::from_secs(20), || {
        seen.insert(psql_ok(&url, "SELECT inet_server_port()"));
        seen.contains(&stopped)
    });
    assert!(
        back,
        "the restarted replica never rejoined the read set: {seen:?}"
    );
}

/// The primary stops: writes fail fast with a clear error while reads go on. A replica
/// is promoted: writes follow it without a restart.
#[test]
fn writes_follow_a_promoted_replica() {
    let c = Cluster::start(2);
    psql_ok(
        &c.primary_url("app"),
        "CREATE TABLE f (id int); GRANT ALL ON f TO app",
    );
    c.wait_replicas_caught_up();
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    let insert = "INSERT INTO f VALUES (1) RETURNING inet_server_port()";
    assert!(psql_ok(&url, insert).starts_with(&format!("{}\n", c.primary_port)));

    c.stop_node("primary");
    let t = Instant::now();
    let out = common::psql(&url, insert);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a write succeeded with the primary down"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "the write took {:?} to fail",
        t.elapsed()
    );
    assert!(
        stderr.contains("could not connect") || stderr.contains("connect"),
        "{stderr}"
    );
    // Reads continue on the replicas.
    let port = psql_ok(&url, "SELECT inet_server_port()");
    assert!(
        c.replica_ports.iter().any(|p| p.to_string() == port),
        "read served by {port}"
    );

    c.promote("replica1");
    let new_primary = c.replica_ports[0].to_string();
    let mut last = String::new();
    let moved = wait_until(Duration::from_secs(30), || {
        let out = common::psql(&url, insert);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.success() && last.starts_with(&format!("{new_primary}\n"))
    });
    assert!(
        moved,
        "writes did not move to the promoted replica; last: {last}"
    );
}

/// The admin console's SHOW NODES and the per-node metrics show what the router sees.
#[test]
fn show_nodes_and_node_metrics() {
    let c = Cluster::start(2);
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
    for _ in 0..10 {
        psql_ok(&url, "SELECT 1");
    }
    let admin = pooler.url("admin", "admin_pw", "pgsluice");
    let rows = psql_ok(&admin, "SHOW NODES");
    let lines: Vec<Vec<&str>> = rows
        .lines()
        .map(|l| l.split('|').collect::<Vec<_>>())
        .filter(|l| l[0] == "app")
        .collect();
    assert_eq!(lines.len(), 3, "{rows}");
    // database|node|addr|role|up|in_read_set|why_not|lsn|lag_bytes|lag_seconds|clients|reads|...
    assert_eq!(
        &lines[0][..6],
        [
            "app",
            "0",
            &format!("127.0.0.1:{}", c.primary_port)[..],
            "primary",
            "t",
            "f"
        ],
        "{rows}"
    );
    for l in &lines[1..] {
        assert_eq!((l[3], l[4], l[5]), ("replica", "t", "t"), "{rows}");
        assert!(l[7].contains('/'), "lsn {:?}", l[7]);
    }
    let reads: u64 = lines[1..]
        .iter()
        .map(|l| l[11].parse::<u64>().unwrap())
        .sum();
    assert!(reads >= 10, "reads routed to replicas: {reads}\n{rows}");

    let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect HTTP");
    use std::io::{Read, Write};
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    for needle in [
        "pgsluice_node_up{database=\"app\",node=\"1\"",
        "pgsluice_node_is_primary{database=\"app\",node=\"0\"",
        "pgsluice_node_reads_total{database=\"app\",node=\"2\"",
        "pgsluice_node_lag_bytes{",
        "pgsluice_ryw_primary_reads_total{database=\"app\"}",
    ] {
        assert!(body.contains(needle), "no {needle} in /metrics:\n{body}");
    }
}

/// A client that pipelines reads and writes on one connection (tokio-postgres sends them
/// all before reading any answer): a write queued behind reads on a replica waits for them
/// and then goes to the primary; no write ever reaches a replica, and each read after a
/// write sees it.
#[test]
fn pipelined_write_behind_reads_goes_to_the_primary() {
    let c = Cluster::start(2);
    psql_ok(
        &c.primary_url("app"),
        "CREATE TABLE pipe (id int); GRANT ALL ON pipe TO app",
    );
    c.wait_replicas_caught_up();
    let pooler = Pooler::start(&routing_config(&c, ""));
    let url = pooler.url("app", "app_pw", "app");
    wait_read_set(&c, &url);
    run_async(60, async move {
        let (client, _rx) = common::pg_connect(&url).await;
        for i in 0..50i32 {
            let (insert, count) = (
                format!("INSERT INTO pipe VALUES ({i})"),
                format!("SELECT count(*) FROM pipe WHERE id = {i}"),
            );
            let read = client.simple_query("SELECT inet_server_port()");
            let write = client.simple_query(&insert);
            let check = client.simple_query(&count);
            let (r, w, k) = futures_util::join!(read, write, check);
            r.expect("pipelined read");
            w.unwrap_or_else(|e| panic!("pipelined write {i}: {e}"));
            let n = k
                .expect("read after the write")
                .into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                });
            assert_eq!(
                n.as_deref(),
                Some("1"),
                "write {i} not visible to the read after it"
            );
        }
    });
}

/// The read-your-writes probe that waits is a statement pgsluice prepares once on each
/// replica connection, listed with the clients' statements there. With room for two
/// statements per connection, the clients' statements evict it (and it goes unnamed
/// while the record is full), and a client's `DISCARD ALL` drops it: every read still
/// sees the session's own write, none fails, and most still run on the replica.
#[test]
fn the_prepared_probe_survives_eviction_and_discard_all() {
    let c = Cluster::start(1);
    psql_ok(
        &c.primary_url("app"),
        "ALTER DATABASE app SET synchronous_commit = on; \
         CREATE TABLE pp (id int PRIMARY KEY); GRANT ALL ON pp TO app",
    );
    let cfg = common::with_general(&routing_config(&c, ""), "max_prepared_statements = 2");
    let pooler = Pooler::start(&cfg);
    let url = pooler.url("app", "app_pw", "app");
    wait_until(Duration::from_secs(10), || {
        psql_ok(&url, "SELECT count(*) FROM pg_class WHERE relname = 'pp'") == "1"
    });
    let replica = c.replica_ports[0].to_string();
    log_statements(&c);
    run_async(120, async move {
        let (writer, _w) = common::pg_connect(&url).await;
        let reads = [
            "SELECT count(*), inet_server_port()::text FROM pp WHERE id = $1",
            "SELECT count(*) + 0, inet_server_port()::text FROM pp WHERE id = $1",
            "SELECT count(*) * 1, inet_server_port()::text FROM pp WHERE id = $1",
        ];
        let (mut on_replica, mut total, mut stale) = (0, 0, Vec::new());
        for i in 0..150i32 {
            writer
                .execute("INSERT INTO pp VALUES ($1)", &[&i])
                .await
                .expect("insert");
            for sql in reads {
                let row = writer.query_one(sql, &[&i]).await.expect("read");
                let (n, port): (i64, String) = (row.get(0), row.get(1));
                if n != 1 {
                    stale.push((i, sql, port.clone()));
                }
                on_replica += u32::from(port == replica);
                total += 1;
            }
            if i % 25 == 24 {
                writer
                    .batch_execute("DISCARD ALL")
                    .await
                    .expect("DISCARD ALL");
            }
        }
        eprintln!("reads on the replica: {on_replica} of {total}");
        assert!(
            stale.is_empty(),
            "stale reads of the session's writes: {stale:?}"
        );
        assert!(
            on_replica * 2 >= total,
            "only {on_replica} of {total} reads on the replica"
        );
    });
    // The replica ran the probe under its name (prepared there), and unnamed while a
    // connection's record was full.
    let log = std::fs::read_to_string(c.dir.join("replica1.log")).unwrap_or_default();
    let named = log.matches("execute sluice_18446744073709551615").count();
    let unnamed = log
        .matches("execute <unnamed>: WITH RECURSIVE w(n, lsn)")
        .count();
    eprintln!("probes on the replica: {named} named, {unnamed} unnamed");
    assert!(named > 0, "the probe never ran prepared");
}
