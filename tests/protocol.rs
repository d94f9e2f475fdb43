//! The wire protocol through pgsluice: COPY in both directions, a large result
//! read slowly (backpressure, pgsluice's memory), query cancellation, hand-made
//! pipelines and ParameterStatus on a raw socket.
//!
//! Every test starts its own cluster and pgsluice (parallel-safe under cargo
//! test and nextest); every wait is bounded.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::pg::{sqlstate, superuser};
use common::wire::{Raw, cstr, data, extended_batch, frame, query_msg, startup_packet, tags};
use common::{Cluster, Pooler, pg_connect, psql_args_stdin, rss_kib, run_async, setup, sq, sq1};
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::Client;

// ------------------------------------------------------------------ COPY

/// 100k rows of COPY text: "id\tvalue-id\n".
fn copy_data() -> Vec<u8> {
    let mut d = Vec::new();
    for i in 0..100_000 {
        d.extend_from_slice(format!("{i}\tvalue-{i}-{}\n", i * 7919 % 1000).as_bytes());
    }
    d
}

#[test]
fn copy_in_and_out_with_tokio_postgres_session_mode() {
    let (cluster, pooler) = setup("session", "scram-sha-256", 2);
    run_async(60, async {
        let adm = superuser(&cluster).await;
        adm.batch_execute("CREATE TABLE copy_t (id int, v text); ALTER TABLE copy_t OWNER TO app")
            .await
            .unwrap();
        let (client, _) = pg_connect(&pooler.url("app", "app_pw", "app")).await;
        let data = copy_data();
        let sink = client
            .copy_in("COPY copy_t (id, v) FROM STDIN")
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        for chunk in data.chunks(50_000) {
            sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let n = sink.as_mut().finish().await.unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(
            sq1(&adm, "SELECT count(*) || '/' || sum(id) FROM copy_t").await,
            format!("100000/{}", (0..100_000i64).sum::<i64>())
        );

        let stream = client
            .copy_out("COPY (SELECT id, v FROM copy_t ORDER BY id) TO STDOUT")
            .await
            .unwrap();
        let mut stream = std::pin::pin!(stream);
        let mut back = Vec::new();
        while let Some(chunk) = stream.next().await {
            back.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(back.len(), data.len());
        assert!(
            back == data,
            "COPY TO STDOUT returned other bytes than COPY FROM STDIN took"
        );

        // The connection is still in a clean state afterwards.
        assert_eq!(
            sq1(
                &client,
                "SELECT count(*) FROM copy_t WHERE v LIKE 'value-%'"
            )
            .await,
            "100000"
        );
        // A failing COPY (bad row) is an error, not a broken session.
        let sink = client
            .copy_in("COPY copy_t (id, v) FROM STDIN")
            .await
            .unwrap();
        let mut sink = std::pin::pin!(sink);
        sink.send(Bytes::from_static(b"1\tok\nnot-a-number\tx\n"))
            .await
            .unwrap();
        let err = sink.as_mut().finish().await.unwrap_err();
        assert_eq!(sqlstate(&err), "22P02", "{err}");
        assert_eq!(sq1(&client, "SELECT count(*) FROM copy_t").await, "100000");
    });
}

#[test]
fn copy_in_and_out_with_psql_transaction_mode() {
    let (cluster, pooler) = setup("transaction", "scram-sha-256", 2);
    let url = pooler.url("app", "app_pw", "app");
    common::psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE TABLE copy_p (id int, v text); CREATE TABLE copy_p2 (id int, v text)",
    );
    let data = copy_data();
    let ok = |out: std::process::Output, what: &str| -> String {
        assert!(
            out.status.success(),
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // COPY ... FROM STDIN from psql's stdin, then a query on the same connection.
    let out = psql_args_stdin(
        &url,
        &[
            "-c",
            "COPY copy_p (id, v) FROM STDIN",
            "-c",
            "SELECT count(*) FROM copy_p",
        ],
        &data,
    );
    assert_eq!(ok(out, "COPY FROM STDIN").trim(), "COPY 100000\n100000");
    // \copy ... FROM pstdin
    let out = psql_args_stdin(
        &url,
        &[
            "-c",
            "\\copy copy_p2 (id, v) FROM pstdin",
            "-c",
            "SELECT sum(id) FROM copy_p2",
        ],
        &data,
    );
    assert_eq!(
        ok(out, "\\copy FROM pstdin").trim(),
        format!("COPY 100000\n{}", (0..100_000i64).sum::<i64>())
    );
    // Back out with COPY TO STDOUT, byte for byte.
    for table in ["copy_p", "copy_p2"] {
        let sql = format!("COPY (SELECT id, v FROM {table} ORDER BY id) TO STDOUT");
        let out = psql_args_stdin(&url, &["-c", &sql], b"");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), data.len(), "{sql}");
        assert!(out.stdout == data, "{sql}: other bytes than went in");
    }
    let direct = common::psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "SELECT (SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM copy_p) = \
         (SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM copy_p2)",
    );
    assert_eq!(direct, "t");
}

// ------------------------------------------------------------------ large result, slow reader

#[test]
fn large_result_read_slowly_is_not_buffered() {
    let (cluster, pooler) = setup("transaction", "md5", 2);
    const ROWS: usize = 200_000;
    run_async(90, async {
        let adm = superuser(&cluster).await;
        let (mut raw, _) = Raw::connect(pooler.port, "app", "app_pw", "app").await;
        // Warm up: one query so the server connection exists.
        raw.send(&query_msg("SELECT 1")).await;
        assert_eq!(tags(&raw.until_ready().await), "TDCZ");
        let base = rss_kib(pooler.pid());

        let sql = format!("SELECT repeat('x', 1000) FROM generate_series(1, {ROWS})");
        raw.send(&query_msg(&sql)).await;
        assert_eq!(raw.recv().await.tag, b'T');
        let mut rows = 0usize;
        for _ in 0..1000 {
            let m = raw.recv().await;
            assert_eq!(m.tag, b'D', "{m:?}");
            rows += 1;
        }
        // Now stall. The server must end up blocked writing (backpressure reached it) ...
        let wait_sql = "SELECT coalesce(wait_event, '') FROM pg_stat_activity \
                        WHERE query LIKE 'SELECT repeat(%' AND state = 'active'";
        let mut wait_event = String::new();
        let mut max_rss = base;
        for _ in 0..100 {
            max_rss = max_rss.max(rss_kib(pooler.pid()));
            wait_event = sq(&adm, wait_sql).await.join(",");
            if wait_event == "ClientWrite" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // ... and stay so while pgsluice's memory stays flat.
        for _ in 0..15 {
            max_rss = max_rss.max(rss_kib(pooler.pid()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let after_stall = sq(&adm, wait_sql).await.join(",");
        let growth_mib = (max_rss.saturating_sub(base)) / 1024;
        eprintln!(
            "pgsluice RSS: {} KiB before, {max_rss} KiB max while stalled",
            base
        );
        assert!(
            growth_mib < 100,
            "pgsluice RSS grew by {growth_mib} MiB (from {} MiB) while the client read slowly",
            base / 1024
        );
        assert_eq!(
            wait_event, "ClientWrite",
            "server not blocked on the slow client"
        );
        assert_eq!(
            after_stall, "ClientWrite",
            "server finished sending to a stalled client"
        );

        // Read the rest and check it.
        let last = loop {
            let m = raw.recv().await;
            match m.tag {
                b'D' => {
                    if rows.is_multiple_of(10_000) {
                        let cols = m.columns();
                        assert_eq!(cols.len(), 1);
                        let v = cols[0].as_ref().expect("NULL");
                        assert!(
                            v.len() == 1000 && v.iter().all(|&b| b == b'x'),
                            "bad row {rows}"
                        );
                    }
                    rows += 1;
                }
                _ => break m,
            }
        };
        assert_eq!(rows, ROWS);
        assert_eq!(last.tag, b'C', "{last:?}");
        assert_eq!(last.cstrs(), [format!("SELECT {ROWS}")]);
        let z = raw.recv().await;
        assert_eq!((z.tag, &z.body[..]), (b'Z', &b"I"[..]));
        // Still usable.
        raw.send(&query_msg("SELECT 'after'")).await;
        let msgs = raw.until_ready().await;
        assert_eq!(tags(&msgs), "TDCZ");
        assert_eq!(msgs[1].columns()[0].as_deref(), Some(&b"after"[..]));
    });
}

// ------------------------------------------------------------------ cancellation

/// Waits (≤10 s) until the primary runs a statement matching `pattern` (in another
/// backend: this query's own text matches a `%word%` pattern too).
async fn wait_active(adm: &Client, pattern: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
         AND pid <> pg_backend_pid() AND query LIKE '{pattern}'"
    );
    for _ in 0..200 {
        if sq1(adm, &sql).await != "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no active query like {pattern} after 10 s");
}

#[test]
fn cancel_reaches_only_the_cancelled_clients_server() {
    let cluster = Cluster::start(0);
    for mode in ["transaction", "session"] {
        let pooler = Pooler::start(&cluster.pooler_config(mode, "scram-sha-256", 2));
        run_async(60, async {
            let adm = superuser(&cluster).await;
            let url = pooler.url("app", "app_pw", "app");
            let (a, _) = pg_connect(&url).await;
            let (b, _) = pg_connect(&url).await;
            let token = a.cancel_token();
            let ta = tokio::spawn(async move {
                let r = a.simple_query("SELECT pg_sleep(30) /* victim */").await;
                (r.map(|_| ()), a)
            });
            wait_active(&adm, "%victim%").await;
            let tb = tokio::spawn(async move {
                b.simple_query("SELECT pg_sleep(2) /* bystander */")
                    .await
                    .map(|_| ())
            });
            wait_active(&adm, "%bystander%").await;

            token
                .cancel_query(tokio_postgres::NoTls)
                .await
                .expect("send cancel");
            let (res, a) = tokio::time::timeout(Duration::from_secs(5), ta)
                .await
                .unwrap_or_else(|_| panic!("{mode}: cancelled query still running after 5 s"))
                .unwrap();
            let err = res.expect_err("pg_sleep(30) was not cancelled");
            assert_eq!(sqlstate(&err), "57014", "{mode}: {err}");
            let res = tokio::time::timeout(Duration::from_secs(10), tb)
                .await
                .expect("bystander hung")
                .unwrap();
            assert!(
                res.is_ok(),
                "{mode}: the other client's query was cancelled too: {res:?}"
            );
            // The cancelled client carries on.
            assert_eq!(sq1(&a, "SELECT 'alive'").await, "alive", "{mode}");
        });
        drop(pooler);
    }
}

#[test]
fn cancel_from_idle_client_cancels_nothing() {
    // Transaction mode, one server: A used it and went idle; B uses it now.
    let (cluster, pooler) = setup("transaction", "scram-sha-256", 1);
    run_async(60, async {
        let adm = superuser(&cluster).await;
        let url = pooler.url("app", "app_pw", "app");
        let (a, _) = pg_connect(&url).await;
        let (b, _) = pg_connect(&url).await;
        let pa = sq1(&a, "SELECT pg_backend_pid()").await;
        let pb = sq1(&b, "SELECT pg_backend_pid()").await;
        assert_eq!(pa, pb, "pool size 1 but two servers");
        let tb = tokio::spawn(async move {
            b.simple_query("SELECT pg_sleep(2) /* busy_b */")
                .await
                .map(|_| ())
        });
        wait_active(&adm, "%busy_b%").await;
        a.cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("send cancel");
        let res = tokio::time::timeout(Duration::from_secs(10), tb)
            .await
            .expect("B hung")
            .unwrap();
        assert!(
            res.is_ok(),
            "idle client A's cancel request cancelled B's query: {res:?}"
        );
        assert_eq!(sq1(&a, "SELECT 1").await, "1");
    });
}

// ------------------------------------------------------------------ pipelining, ParameterStatus

#[test]
fn raw_pipeline_of_three_syncs_in_one_write() {
    let (_cluster, pooler) = setup("transaction", "md5", 2);
    run_async(60, async {
        let (mut raw, _) = Raw::connect(pooler.port, "app", "app_pw", "app").await;
        // Meanwhile another client keeps the pool busy.
        let url = pooler.url("app", "app_pw", "app");
        let other = tokio::spawn(async move {
            let (c, _) = pg_connect(&url).await;
            for i in 0..50 {
                assert_eq!(sq1(&c, &format!("SELECT {i}")).await, i.to_string());
            }
        });
        for round in 0..20 {
            let mut w = Vec::new();
            w.extend(extended_batch("SELECT $1::int * 2", &["21"]));
            w.extend(extended_batch(
                "SELECT $1::text || '!'",
                &[&format!("r{round}")],
            ));
            w.extend(extended_batch("SELECT $1::int + $2::int", &["1", "2"]));
            raw.send(&w).await;
            let want = ["42".to_string(), format!("r{round}!"), "3".to_string()];
            for (i, want) in want.iter().enumerate() {
                let msgs = raw.until_ready().await;
                assert_eq!(tags(&msgs), "12DCZ", "round {round} batch {i}: {msgs:?}");
                assert_eq!(
                    msgs[2].columns()[0].as_deref(),
                    Some(want.as_bytes()),
                    "round {round} batch {i}"
                );
                assert_eq!(msgs[3].cstrs(), ["SELECT 1"]);
                assert_eq!(&msgs[4].body[..], b"I");
            }
        }
        // An error in the middle batch affects only that batch.
        let mut w = Vec::new();
        w.extend(extended_batch("SELECT $1::int", &["7"]));
        w.extend(extended_batch("SELECT 1 / $1::int", &["0"]));
        w.extend(extended_batch("SELECT $1::int", &["8"]));
        raw.send(&w).await;
        let m1 = raw.until_ready().await;
        assert_eq!(tags(&m1), "12DCZ");
        let m2 = raw.until_ready().await;
        // (the server may fail it at Bind, folding the constant, or at Execute)
        assert!(["1EZ", "12EZ"].contains(&tags(&m2).as_str()), "{m2:?}");
        assert_eq!(m2[m2.len() - 2].field(b'C').as_deref(), Some("22012"));
        let m3 = raw.until_ready().await;
        assert_eq!(tags(&m3), "12DCZ", "{m3:?}");
        assert_eq!(m3[2].columns()[0].as_deref(), Some(&b"8"[..]));
        // A pipelined transaction: BEGIN, INSERT-free SELECT, COMMIT, one server throughout.
        let mut w = Vec::new();
        w.extend(extended_batch("BEGIN", &[]));
        w.extend(extended_batch("SELECT pg_backend_pid()", &[]));
        w.extend(extended_batch("SELECT pg_backend_pid()", &[]));
        w.extend(extended_batch("COMMIT", &[]));
        raw.send(&w).await;
        let b = raw.until_ready().await;
        assert_eq!((tags(&b), &b[3].body[..]), ("12CZ".to_string(), &b"T"[..]));
        let p1 = raw.until_ready().await;
        let p2 = raw.until_ready().await;
        assert_eq!(tags(&p1), "12DCZ");
        assert_eq!(
            p1[2].columns(),
            p2[2].columns(),
            "transaction changed servers"
        );
        let c = raw.until_ready().await;
        assert_eq!((tags(&c), &c[3].body[..]), ("12CZ".to_string(), &b"I"[..]));
        tokio::time::timeout(Duration::from_secs(20), other)
            .await
            .expect("other client hung")
            .unwrap();
    });
}

#[test]
fn parameter_status_and_backend_key_reach_the_client() {
    let (_cluster, pooler) = setup("transaction", "md5", 2);
    run_async(60, async {
        let (mut raw, startup) = Raw::connect(pooler.port, "app", "app_pw", "app").await;
        let params: Vec<Vec<String>> = startup
            .iter()
            .filter(|m| m.tag == b'S')
            .map(|m| m.cstrs())
            .collect();
        for name in [
            "server_version",
            "client_encoding",
            "DateStyle",
            "integer_datetimes",
            "standard_conforming_strings",
        ] {
            assert!(
                params.iter().any(|p| p[0] == name),
                "no ParameterStatus {name} at startup: {params:?}"
            );
        }
        assert_eq!(
            startup.iter().filter(|m| m.tag == b'K').count(),
            1,
            "BackendKeyData: {startup:?}"
        );

        raw.send(&query_msg("SET application_name = 'raw_x'")).await;
        let msgs = raw.until_ready().await;
        assert!(
            msgs.iter()
                .any(|m| m.tag == b'S' && m.cstrs() == ["application_name", "raw_x"]),
            "no ParameterStatus for SET application_name: {msgs:?}"
        );
        raw.send(&query_msg("SHOW application_name")).await;
        let msgs = raw.until_ready().await;
        assert_eq!(msgs[1].columns()[0].as_deref(), Some(&b"raw_x"[..]));

        // NOTICE on the raw socket too, in order before the CommandComplete.
        raw.send(&query_msg("DO $$BEGIN RAISE NOTICE 'raw notice'; END$$"))
            .await;
        let msgs = raw.until_ready().await;
        assert_eq!(tags(&msgs), "NCZ", "{msgs:?}");
        assert_eq!(msgs[0].field(b'M').as_deref(), Some("raw notice"));
    });
}

// ------------------------------------------------------------------ bytes ahead of the greeting

/// pgsluice reads a client's first packets in one `recv`, so it may read what the client
/// sent after them too. A query sent in the same write as the password is kept for the
/// session and answered after the greeting (as PostgreSQL does); bytes sent after an
/// SSLRequest, before its answer, are refused as PostgreSQL refuses them (they were not
/// encrypted, whatever the answer would have been).
#[test]
fn bytes_sent_with_the_password_reach_the_session_and_after_sslrequest_are_refused() {
    let (_cluster, pooler) = setup("transaction", "md5", 2);
    run_async(60, async {
        for _ in 0..3 {
            let mut raw = Raw::open(pooler.port).await;
            raw.send(&startup_packet(&[("user", "app"), ("database", "app")]))
                .await;
            let m = raw.recv().await;
            assert_eq!((m.tag, &m.body[..4]), (b'R', &5i32.to_be_bytes()[..]));
            let salt: [u8; 4] = m.body[4..8].try_into().unwrap();
            let hash = postgres_protocol::authentication::md5_hash(b"app", b"app_pw", salt);
            let mut body = Vec::new();
            cstr(&mut body, &hash);
            let mut bytes = frame(b'p', &body);
            bytes.extend(query_msg("SELECT 40 + 2"));
            bytes.extend(query_msg("SELECT 'second'"));
            raw.send(&bytes).await;
            let greeting = raw.until_ready().await;
            assert!(greeting.iter().all(|m| m.tag != b'E'), "{greeting:?}");
            let first = raw.until_ready().await;
            assert_eq!(data(&first), ["42"], "{first:?}");
            let second = raw.until_ready().await;
            assert_eq!(data(&second), ["second"], "{second:?}");
        }

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", pooler.port))
            .await
            .unwrap();
        let mut bytes = 8u32.to_be_bytes().to_vec();
        bytes.extend(80_877_103u32.to_be_bytes());
        bytes.extend(startup_packet(&[("user", "app"), ("database", "app")]));
        sock.write_all(&bytes).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer))
            .await
            .expect("pgsluice kept the connection open")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(answer.first(), Some(&b'E'), "{text}");
        assert!(
            text.contains("08P01") && text.contains("unencrypted data after SSL request"),
            "{text}"
        );
        // The pooler is unharmed.
        let (mut raw, _) = Raw::connect(pooler.port, "app", "app_pw", "app").await;
        raw.send(&query_msg("SELECT 1")).await;
        assert_eq!(data(&raw.until_ready().await), ["1"]);
    });
}

// ------------------------------------------------------------------ sequence discard

/// A unit that may touch sequence values, on a server that last held another client's, is
/// preceded by a hidden `DISCARD SEQUENCES`, and pgsluice raises the server socket's
/// receive low-water mark past the discard's answer so that answer alone does not wake it
/// (`core/sequences.rs`). The smallest answer a unit can get is one 5-byte message (a
/// ParseComplete asked for with Flush): it must still come through at once, as must a
/// simple query's and a whole extended unit's, round after round on the one server.
#[test]
fn the_smallest_answer_behind_a_sequence_discard_is_not_held_back() {
    let (cluster, pooler) = setup("transaction", "md5", 1);
    common::psql_ok(
        &cluster.node_url("primary", "app", "app_pw", "app"),
        "CREATE SEQUENCE proto_seq",
    );
    run_async(90, async {
        let (other, _) = pg_connect(&pooler.url("app", "app_pw", "app")).await;
        let (mut raw, _) = Raw::connect(pooler.port, "app", "app_pw", "app").await;
        let within = Duration::from_secs(5);
        let mut last = 0i64;
        for round in 0..20 {
            // The other client sets a value on the one server.
            let v: i64 = sq1(&other, "SELECT nextval('proto_seq')")
                .await
                .parse()
                .unwrap();
            assert!(v > last, "round {round}");
            // A Parse and a Flush: the answer is one ParseComplete.
            let mut w = common::wire::parse("", "SELECT nextval('proto_seq')", &[]);
            w.extend(common::wire::flush());
            raw.send(&w).await;
            let m = tokio::time::timeout(within, raw.recv())
                .await
                .unwrap_or_else(|_| panic!("round {round}: ParseComplete held back"));
            assert_eq!(m.tag, b'1', "round {round}: {m:?}");
            let mut w = common::wire::bind("", &[]);
            w.extend(common::wire::execute());
            w.extend(common::wire::sync());
            raw.send(&w).await;
            let msgs = tokio::time::timeout(within, raw.until_ready())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the unit's answer held back"));
            assert_eq!(tags(&msgs), "2DCZ", "round {round}: {msgs:?}");
            last = std::str::from_utf8(msgs[1].columns()[0].as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!(last > v, "round {round}: its own value after the other's");
            // The other client again, then a simple query on the raw one.
            sq(&other, "SELECT nextval('proto_seq')").await;
            raw.send(&query_msg("SELECT currval('proto_seq')")).await;
            let msgs = tokio::time::timeout(within, raw.until_ready())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the query's answer held back"));
            // Never the other client's value: the server it holds carried the other's,
            // discarded first, so "not yet defined in this session".
            assert_eq!(tags(&msgs), "TEZ", "round {round}: {msgs:?}");
            assert_eq!(
                msgs[1].field(b'C').as_deref(),
                Some("55000"),
                "round {round}"
            );
        }
    });
}
