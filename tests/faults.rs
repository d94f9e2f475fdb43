//! Errors and bad input (DESIGN.md "Errors and bad input", issue 2 "Bad input and
//! faults"): every failure reaches that one client as an ErrorResponse with the right
//! SQLSTATE (or a clean close where the protocol allows nothing else), other clients are
//! unaffected, and no server connection leaks or goes back to the pool dirty.
//!
//! After each fault, [`assert_healthy`] checks on the primary itself (psql, as postgres)
//! that the pool's user has no more than pool_size backends and none idle in
//! transaction, and that a new client through pgsluice works.

mod common;

use std::time::{Duration, Instant};

use common::pg::{Pg, code, first, rt, within};
use common::wire::{End, Raw, assert_refused, err_code, query_msg, startup_packet, status};
use common::{
    Cluster, Pooler, psql, psql_ok, server_activity, server_conns, wait_until, with_general,
};

// ------------------------------------------------------------------ helpers

/// After a fault: on the primary, `user` has at most `pool_size` backends, none idle in
/// transaction; a new client through pgsluice works.
fn assert_healthy(c: &Cluster, p: &Pooler, user: &str, pw: &str, pool_size: u32) {
    let admin = c.primary_url("postgres");
    let settled = wait_until(Duration::from_secs(10), || {
        let (n, idle_in_txn) = server_conns(&admin, user);
        n <= pool_size && idle_in_txn == 0
    });
    assert!(
        settled,
        "server connections of {user} leaked (pool size {pool_size}) or idle in transaction:\n{}",
        server_activity(&admin, user)
    );
    assert_eq!(psql_ok(&p.url(user, pw, "app"), "SELECT 42"), "42");
}

/// `psql` as `user` directly on the primary, database app.
fn direct(c: &Cluster, sql: &str) -> String {
    psql_ok(&c.node_url("primary", "app", "app_pw", "app"), sql)
}

/// Backend pid of the active query of `user` that starts with `prefix` (waits ≤10 s).
fn active_pid(c: &Cluster, user: &str, prefix: &str) -> String {
    let admin = c.primary_url("postgres");
    let sql = format!(
        "SELECT pid FROM pg_stat_activity WHERE usename = '{user}' AND state = 'active' \
         AND query LIKE '{prefix}%'"
    );
    let mut pid = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            pid = psql_ok(&admin, &sql);
            !pid.is_empty()
        }),
        "no active {prefix:?} of {user} on the primary:\n{}",
        server_activity(&admin, user)
    );
    pid
}

fn pid_gone(c: &Cluster, pid: &str) -> bool {
    psql_ok(
        &c.primary_url("postgres"),
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
    ) == "0"
}

/// Logs in as app/app over a raw socket (the pooler must use trust auth); the session is
/// idle.
async fn raw_login(p: &Pooler) -> Raw {
    let (s, startup) = Raw::connect(p.port, "app", "", "app").await;
    assert_eq!(status(&startup), 'I', "{startup:?}");
    s
}

// ------------------------------------------------------------------ tests

#[test]
fn unknown_database_gets_3d000() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 2));
    rt().block_on(async {
        let bystander = Pg::connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(bystander.one("SELECT 1").await, "1");
        let e = Pg::try_connect(&p.url("app", "app_pw", "nope"))
            .await
            .err()
            .expect("connected to a database that is not configured");
        assert_eq!(code(&e).as_deref(), Some("3D000"), "{e:?}");
        assert_eq!(bystander.one("SELECT 2").await, "2");
        assert_healthy(&c, &p, "app", "app_pw", 2);
    });
}

#[test]
fn bad_credentials_get_28p01() {
    let c = Cluster::start(0);
    let scram = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 2));
    let md5 = Pooler::start(&c.pooler_config("transaction", "md5", 2));
    rt().block_on(async {
        for (auth, p) in [("scram-sha-256", &scram), ("md5", &md5)] {
            let bystander = Pg::connect(&p.url("app", "app_pw", "app")).await;
            assert_eq!(bystander.one("SELECT current_user").await, "app");
            for (user, pw) in [
                ("app", "wrong"),
                ("md5user", "wrong"),
                ("plainuser", "wrong"),
                ("nobody", "whatever"),
            ] {
                let e = Pg::try_connect(&p.url(user, pw, "app"))
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{auth}: {user}/{pw} logged in"));
                assert_eq!(
                    code(&e).as_deref(),
                    Some("28P01"),
                    "{auth}: {user}/{pw}: {e:?}"
                );
            }
            // the right passwords still work
            for (user, pw) in [("md5user", "md5_pw"), ("plainuser", "plain_pw")] {
                let ok = Pg::connect(&p.url(user, pw, "app")).await;
                assert_eq!(ok.one("SELECT current_user").await, user, "{auth}");
                ok.close().await;
            }
            assert_eq!(bystander.one("SELECT 2").await, "2");
        }
        // both poolers share the cluster: 2 + 2 server connections at most
        assert_healthy(&c, &scram, "app", "app_pw", 4);
        assert_healthy(&c, &md5, "app", "app_pw", 4);
    });
}

/// Connects, retrying while the answer is 53300 (a client that just left may not be
/// counted out yet), up to 10 s.
async fn connect_when_admitted(url: &str) -> Pg {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Pg::try_connect(url).await {
            Ok(pg) => return pg,
            Err(e) if code(&e).as_deref() == Some("53300") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("connect {url}: {e:?}"),
        }
    }
}

#[test]
fn too_many_clients_get_53300() {
    let c = Cluster::start(0);
    let p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 2),
        "max_client_conn = 3",
    ));
    let url = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(connect_when_admitted(&url).await);
        }
        for (i, pg) in held.iter().enumerate() {
            assert_eq!(pg.one(&format!("SELECT {i}")).await, i.to_string());
        }
        let e = Pg::try_connect(&url)
            .await
            .err()
            .expect("a 4th client got in with max_client_conn = 3");
        assert_eq!(code(&e).as_deref(), Some("53300"), "{e:?}");
        // the three are unaffected
        for pg in &held {
            assert_eq!(pg.one("SELECT 7").await, "7");
        }
        // one leaves, a new one gets in
        held.pop().unwrap().close().await;
        let newcomer = connect_when_admitted(&url).await;
        assert_eq!(newcomer.one("SELECT 8").await, "8");
        newcomer.close().await;
        for pg in held {
            assert_eq!(pg.one("SELECT 9").await, "9");
            pg.close().await;
        }
        let admitted = wait_until(Duration::from_secs(10), || {
            psql(&url, "SELECT 1").status.success()
        });
        assert!(admitted, "no client admitted after all left: {}", p.log());
        assert_healthy(&c, &p, "app", "app_pw", 2);
    });
}

#[test]
fn pool_wait_timeout_gives_57014() {
    let c = Cluster::start(0);
    let p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 1),
        "query_wait_timeout = 0.5",
    ));
    direct(&c, "CREATE TABLE w (i int)");
    let url = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let a = Pg::connect(&url).await;
        a.q("BEGIN").await;
        a.q("SELECT 1").await;
        a.q("INSERT INTO w VALUES (1)").await;
        let b = Pg::connect(&url).await;
        let e = b
            .try_q("SELECT 1")
            .await
            .expect_err("B got a server while A holds the only one");
        assert_eq!(code(&e).as_deref(), Some("57014"), "{e:?}");
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(msg.contains("query_wait_timeout"), "message: {msg:?}");
        // A is unaffected
        assert_eq!(a.one("SELECT count(*) FROM w").await, "1");
        a.q("COMMIT").await;
        a.close().await;
        assert_eq!(direct(&c, "SELECT count(*) FROM w"), "1");
        assert_healthy(&c, &p, "app", "app_pw", 1);
    });
}

#[test]
fn malformed_startup_packets_are_refused() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 2));
    let garbage: Vec<u8> = (0..64u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut huge_garbage = vec![0xde, 0xad, 0xbe, 0xef];
    huge_garbage.extend(&garbage);
    // a plausible length, then nonsense where the protocol version goes
    let mut odd_garbage = 16u32.to_be_bytes().to_vec();
    odd_garbage.extend(&garbage[..12]);
    let mut truncated = 40u32.to_be_bytes().to_vec();
    truncated.extend(196_608u32.to_be_bytes());
    truncated.extend(b"user\0app\0");
    let mut unterminated = 17u32.to_be_bytes().to_vec();
    unterminated.extend(196_608u32.to_be_bytes());
    unterminated.extend(b"user\0app\0");
    let mut v2 = 8u32.to_be_bytes().to_vec();
    v2.extend(0x0002_0000u32.to_be_bytes());
    // (name, bytes, close our side after sending, accepted SQLSTATEs, reset acceptable)
    type Case<'a> = (&'a str, Vec<u8>, bool, &'a [&'a str], bool);
    let cases: Vec<Case> = vec![
        (
            "garbage with a huge length",
            huge_garbage,
            false,
            &["08P01"],
            true,
        ),
        (
            "garbage with a plausible length",
            odd_garbage,
            false,
            &["08P01", "0A000"],
            true,
        ),
        (
            "truncated startup then close",
            truncated,
            true,
            &["08P01"],
            false,
        ),
        (
            "unterminated parameters",
            unterminated,
            false,
            &["08P01"],
            false,
        ),
        (
            "length 3",
            3u32.to_be_bytes().to_vec(),
            false,
            &["08P01"],
            false,
        ),
        (
            "length 0x7fffffff",
            0x7fff_ffffu32.to_be_bytes().to_vec(),
            false,
            &["08P01"],
            false,
        ),
        ("protocol 2.0", v2, false, &["0A000"], false),
    ];
    rt().block_on(async {
        let bystander = Pg::connect(&p.url("app", "app_pw", "app")).await;
        for (what, bytes, close, codes, reset_ok) in cases {
            let mut s = Raw::open(p.port).await;
            s.send(&bytes).await;
            if close {
                s.shutdown_write().await;
            }
            let reply = s.read_to_close().await;
            assert_refused(what, &reply, codes, reset_ok);
            assert_eq!(bystander.one("SELECT 1").await, "1", "after {what}");
            assert_eq!(
                psql_ok(&p.url("app", "app_pw", "app"), "SELECT 1"),
                "1",
                "after {what}"
            );
        }
        assert_healthy(&c, &p, "app", "app_pw", 2);
    });
}

#[test]
fn bad_message_lengths_after_login() {
    let c = Cluster::start(0);
    let p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "trust", 2),
        "max_message_size = 1048576",
    ));
    direct(&c, "CREATE TABLE m (i int)");
    rt().block_on(async {
        let bystander = Pg::connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(bystander.one("SELECT 1").await, "1");
        let negative = |len: i32| {
            let mut m = vec![b'Q'];
            m.extend(len.to_be_bytes());
            m.extend(b"SELECT 1\0");
            m
        };
        let mut huge = vec![b'Q'];
        huge.extend((2u32 << 20).to_be_bytes());
        huge.extend(vec![b' '; 1024]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("length -1", negative(-1)),
            ("length i32::MIN", negative(i32::MIN)),
            ("length 3", negative(3)),
            ("length 2 MiB > max_message_size", huge),
        ];
        for (what, bytes) in cases {
            for in_txn in [false, true] {
                let what = format!(
                    "{what}{}",
                    if in_txn { " inside a transaction" } else { "" }
                );
                let mut s = raw_login(&p).await;
                if in_txn {
                    for sql in ["BEGIN", "INSERT INTO m VALUES (1)"] {
                        let r = s.batch(&[query_msg(sql)]).await;
                        assert_eq!((err_code(&r), status(&r)), (None, 'T'), "{sql}: {r:?}");
                    }
                }
                let _ = s.try_send(&bytes).await; // pgsluice may close before reading it all
                let reply = s.read_to_close().await;
                assert!(
                    !reply.msgs.is_empty(),
                    "{what}: no ErrorResponse: {reply:?}"
                );
                assert_refused(&what, &reply, &["08P01"], true);
                assert_eq!(bystander.one("SELECT 2").await, "2", "after {what}");
                assert_healthy(&c, &p, "app", "app_pw", 2);
                assert_eq!(
                    direct(&c, "SELECT count(*) FROM m"),
                    "0",
                    "{what}: row committed"
                );
            }
        }
    });
}

#[test]
fn silent_clients_are_cut_by_client_login_timeout() {
    let c = Cluster::start(0);
    let p = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 2),
        "client_login_timeout = 1",
    ));
    rt().block_on(async {
        // logged in before: an idle logged-in client is not subject to the login timeout
        let bystander = Pg::connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(bystander.one("SELECT 1").await, "1");

        let mut silent = Raw::open(p.port).await;
        let mut half_startup = Raw::open(p.port).await;
        half_startup.send(&40u32.to_be_bytes()).await;
        let mut mid_auth = Raw::open(p.port).await;
        mid_auth
            .send(&startup_packet(&[("user", "app"), ("database", "app")]))
            .await;
        let m = mid_auth.recv().await;
        assert_eq!(
            (m.tag, &m.body[..4]),
            (b'R', &10u32.to_be_bytes()[..]),
            "expected a SASL request"
        );

        let waits = tokio::spawn(async move {
            [
                ("silent", silent.read_to_close().await),
                ("half a startup packet", half_startup.read_to_close().await),
                ("stopped mid-authentication", mid_auth.read_to_close().await),
            ]
        });
        // meanwhile, others work
        for i in 0..5 {
            assert_eq!(
                psql_ok(&p.url("app", "app_pw", "app"), &format!("SELECT {i}")),
                i.to_string()
            );
        }
        for (what, reply) in waits.await.unwrap() {
            assert!(
                reply.end != End::Open,
                "{what}: still connected after 10 s: {reply:?}"
            );
            assert!(reply.leftover.is_empty(), "{what}: {reply:?}");
            assert!(
                reply.msgs.iter().all(|m| m.tag == b'E'),
                "{what}: unexpected messages: {reply:?}"
            );
        }
        assert_eq!(bystander.one("SELECT 2").await, "2");
        assert_healthy(&c, &p, "app", "app_pw", 2);
    });
}

#[test]
fn client_gone_mid_transaction_is_rolled_back() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 1));
    direct(&c, "CREATE TABLE g (i int)");
    let url = p.url("app", "app_pw", "app");
    rt().block_on(async {
        for crash in [false, true] {
            let what = if crash {
                "killed"
            } else {
                "closed (Terminate)"
            };
            let a = Pg::connect(&url).await;
            a.q("BEGIN").await;
            a.q("INSERT INTO g VALUES (1)").await;
            assert_eq!(a.one("SELECT count(*) FROM g").await, "1");
            if crash {
                a.kill().await;
            } else {
                a.close().await;
            }
            // the next client gets the (only) server, clean
            let b = Pg::connect(&url).await;
            assert_eq!(
                b.one("SELECT count(*) FROM g").await,
                "0",
                "client {what}: row visible"
            );
            b.q("BEGIN").await;
            assert_eq!(
                b.one("SELECT 1").await,
                "1",
                "client {what}: next client in a transaction"
            );
            b.q("COMMIT").await;
            b.close().await;
            assert_healthy(&c, &p, "app", "app_pw", 1);
            assert_eq!(
                direct(&c, "SELECT count(*) FROM g"),
                "0",
                "client {what}: row committed"
            );
        }
    });
}

#[test]
fn client_killed_during_a_query_closes_its_server() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 1));
    let url = p.url("app", "app_pw", "app");
    rt().block_on(async {
        let a = Pg::connect(&url).await;
        let Pg { client, conn } = a;
        let sleeping =
            tokio::spawn(
                async move { client.simple_query("SELECT pg_sleep(5)").await.map(|_| ()) },
            );
        let pid = active_pid(&c, "app", "SELECT pg_sleep(5)");
        conn.abort(); // the client's socket closes mid-query, no Terminate
        let _ = conn.await;
        let r = within("the killed client's query", sleeping).await.unwrap();
        assert!(r.is_err(), "query finished on a killed connection");

        // the next client must not get the busy server back
        let b = Pg::connect(&url).await;
        let pid_b = b.one("SELECT pg_backend_pid()").await;
        assert_ne!(
            pid_b, pid,
            "the next client got the server still running pg_sleep"
        );
        assert_eq!(b.one("SELECT 1").await, "1");
        b.close().await;
        assert!(
            wait_until(Duration::from_secs(15), || pid_gone(&c, &pid)),
            "the pg_sleep backend {pid} stays:\n{}",
            server_activity(&c.primary_url("postgres"), "app")
        );
        assert_healthy(&c, &p, "app", "app_pw", 1);
    });
}

#[test]
fn server_backend_killed_mid_query() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 1));
    let url = p.url("app", "app_pw", "app");
    let admin = c.primary_url("postgres");
    rt().block_on(async {
        let a = Pg::connect(&url).await;
        let Pg { client, conn } = a;
        let sleeping =
            tokio::spawn(
                async move { client.simple_query("SELECT pg_sleep(10)").await.map(|_| ()) },
            );
        let pid = active_pid(&c, "app", "SELECT pg_sleep(10)");
        assert_eq!(
            psql_ok(&admin, &format!("SELECT pg_terminate_backend({pid})")),
            "t"
        );
        let r = within("the query whose backend was killed", sleeping)
            .await
            .unwrap();
        let e = r.expect_err("pg_sleep succeeded on a terminated backend");
        let c_code = code(&e);
        assert!(
            c_code.is_none() || matches!(c_code.as_deref(), Some("57P01" | "08006")),
            "unexpected error: {e:?}"
        );
        let _ = within("the broken client's connection to end", conn).await;

        // the pool replaced the connection
        let b = Pg::connect(&url).await;
        let pid_b = b.one("SELECT pg_backend_pid()").await;
        assert_ne!(pid_b, pid);

        // an idle pooled server killed: not handed out
        assert_eq!(
            psql_ok(&admin, &format!("SELECT pg_terminate_backend({pid_b})")),
            "t"
        );
        assert!(wait_until(Duration::from_secs(10), || pid_gone(&c, &pid_b)));
        let r = b.try_q("SELECT pg_backend_pid()").await;
        let pid_c =
            first(&r.unwrap_or_else(|e| panic!("query after an idle server was killed: {e:?}")));
        assert_ne!(pid_c, pid_b);
        b.close().await;
        assert_healthy(&c, &p, "app", "app_pw", 1);
    });
}

#[test]
fn idle_in_transaction_timeout_gives_25p03() {
    let c = Cluster::start(0);
    // transaction mode as app, session mode as md5user (separate users: separate counts)
    let txn = Pooler::start(&with_general(
        &c.pooler_config("transaction", "scram-sha-256", 2),
        "idle_transaction_timeout = 1",
    ));
    let ses = Pooler::start(&with_general(
        &c.pooler_config("session", "scram-sha-256", 2),
        "idle_transaction_timeout = 1",
    ));
    direct(&c, "CREATE TABLE it (mode text); GRANT ALL ON it TO PUBLIC");
    rt().block_on(async {
        let mut idlers = Vec::new();
        let mut bystanders = Vec::new();
        for (mode, p, user, pw) in [
            ("transaction", &txn, "app", "app_pw"),
            ("session", &ses, "md5user", "md5_pw"),
        ] {
            let url = p.url(user, pw, "app");
            let t = Pg::connect(&url).await;
            t.q("BEGIN").await;
            t.q(&format!("INSERT INTO it VALUES ('{mode}')")).await;
            idlers.push((mode, t));
            let b = Pg::connect(&url).await;
            assert_eq!(b.one("SELECT 1").await, "1");
            bystanders.push(b);
        }
        for (mode, t) in idlers {
            let what =
                format!("{mode} mode: client idle in transaction > idle_transaction_timeout cut");
            let fatal = t.wait_closed(&what).await;
            assert_eq!(fatal.as_deref(), Some("25P03"), "{mode}");
        }
        // clients idle outside a transaction are not affected
        for b in &bystanders {
            assert_eq!(b.one("SELECT 2").await, "2");
        }
        assert_healthy(&c, &txn, "app", "app_pw", 2);
        assert_healthy(&c, &ses, "md5user", "md5_pw", 2);
        assert_eq!(
            direct(&c, "SELECT count(*) FROM it"),
            "0",
            "rows of cut transactions committed"
        );
    });
}
