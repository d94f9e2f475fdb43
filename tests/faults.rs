//! Errors and bad input (DESIGN.md "Errors and bad input", issue 2 "Bad input and
//! faults"): every failure reaches that one client as an ErrorResponse with the right
//! SQLSTATE (or a clean close where the protocol allows nothing else), other clients are
//! unaffected, and no server connection leaks or goes back to the pool dirty.
//!
//! After each fault, [`assert_healthy`] checks on the primary itself (psql, as postgres)
//! that the pool's user has no more than pool_size backends and none idle in
//! transaction, and that a new client through pgsluice works.

mod common;

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Cluster, Pooler, psql, psql_ok, server_activity, server_conns, wait_until};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Bound on every single step (connect, query, connection end).
const STEP: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------ helpers

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `cfg` with `extra` lines added to its `[general]` section.
fn with_general(cfg: &str, extra: &str) -> String {
    cfg.replacen("[general]\n", &format!("[general]\n{extra}\n"), 1)
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(STEP, what, fut).await
}

async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {limit:?}"),
    }
}

fn code(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// A tokio-postgres client and its connection task.
struct Pg {
    client: Client,
    conn: JoinHandle<Result<(), tokio_postgres::Error>>,
}

async fn try_connect(url: &str) -> Result<Pg, tokio_postgres::Error> {
    let (client, conn) = within(
        &format!("connect {url}"),
        tokio_postgres::connect(url, NoTls),
    )
    .await?;
    Ok(Pg {
        client,
        conn: tokio::spawn(conn),
    })
}

async fn connect(url: &str) -> Pg {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

impl Pg {
    async fn try_q(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        within(sql, self.client.simple_query(sql)).await
    }

    async fn q(&self, sql: &str) -> Vec<SimpleQueryMessage> {
        self.try_q(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// First column of the first row.
    async fn one(&self, sql: &str) -> String {
        first(&self.q(sql).await)
    }

    /// Waits (≤ `limit`) for the connection to end by itself; the SQLSTATE it ended
    /// with, if any.
    async fn wait_closed(self, limit: Duration, what: &str) -> Option<String> {
        let Pg { client, conn } = self;
        let r = within_for(limit, what, conn)
            .await
            .expect("connection task");
        drop(client);
        r.err().and_then(|e| code(&e))
    }

    /// Closes politely (Terminate) and waits for the connection task.
    async fn close(self) {
        let Pg { client, conn } = self;
        drop(client);
        let _ = within("closing a client", conn).await;
    }

    /// Drops the socket without a Terminate message, like a crashed client.
    async fn kill(self) {
        let Pg { client, conn } = self;
        conn.abort();
        let _ = conn.await;
        drop(client);
    }
}

fn first(rows: &[SimpleQueryMessage]) -> String {
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .expect("a row")
}

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

// ------------------------------------------------------------------ raw wire

fn raw(p: &Pooler) -> TcpStream {
    let s = TcpStream::connect(p.addr()).expect("connect to pgsluice");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

fn query_msg(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend(((sql.len() + 5) as u32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

/// The SQLSTATE (`C` field) of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        if kind == b'C' {
            return String::from_utf8_lossy(&tail[..end]).into_owned();
        }
        rest = &tail[(end + 1).min(tail.len())..];
    }
    String::new()
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
enum End {
    Eof,
    Reset,
    /// Still open after the read timeout.
    Open,
    Other(String),
}

/// Everything the server sent until it closed: whole messages, leftover bytes, the end.
#[derive(Debug)]
struct Reply {
    msgs: Vec<(u8, Vec<u8>)>,
    leftover: Vec<u8>,
    end: End,
}

fn read_to_close(s: &mut TcpStream) -> Reply {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break End::Open;
            }
            Err(e) => break End::Other(e.to_string()),
        }
    };
    let mut msgs = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 || rest.len() < len + 1 {
            break;
        }
        msgs.push((rest[0], rest[5..len + 1].to_vec()));
        rest = &rest[len + 1..];
    }
    Reply {
        msgs,
        leftover: rest.to_vec(),
        end,
    }
}

/// The connection was refused properly: nothing but one ErrorResponse with one of
/// `codes` (or nothing at all), then a close (a reset only after the error, or when
/// `reset_ok`: pgsluice closes with our unread bytes in its buffer).
fn assert_refused(what: &str, r: &Reply, codes: &[&str], reset_ok: bool) {
    assert!(r.leftover.is_empty(), "{what}: partial message: {r:?}");
    assert!(r.end != End::Open, "{what}: connection left open: {r:?}");
    match r.msgs.as_slice() {
        [] => assert!(
            r.end == End::Eof || (reset_ok && r.end == End::Reset),
            "{what}: closed without an error, uncleanly: {r:?}"
        ),
        [(b'E', body)] => {
            let c = sqlstate(body);
            assert!(
                codes.contains(&c.as_str()),
                "{what}: SQLSTATE {c}, want one of {codes:?}: {r:?}"
            );
            assert!(
                matches!(r.end, End::Eof | End::Reset),
                "{what}: not closed after the error: {r:?}"
            );
        }
        _ => panic!("{what}: unexpected reply {r:?}"),
    }
}

/// Reads one message (blocking, bounded by the read timeout).
fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).expect("read message header");
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    assert!(
        (4..1 << 20).contains(&len),
        "bad length from pgsluice: {head:?}"
    );
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).expect("read message body");
    (head[0], body)
}

/// Reads up to and including ReadyForQuery; its status byte. Panics on an ErrorResponse.
fn read_until_ready(s: &mut TcpStream) -> u8 {
    loop {
        let (tag, body) = read_msg(s);
        match tag {
            b'Z' => return body[0],
            b'E' => panic!("error from pgsluice: {}", String::from_utf8_lossy(&body)),
            _ => {}
        }
    }
}

/// Logs in as app/app over a raw socket (the pooler must use trust auth).
fn raw_login(p: &Pooler) -> TcpStream {
    let mut s = raw(p);
    s.write_all(&startup_packet(&[("user", "app"), ("database", "app")]))
        .unwrap();
    let (tag, body) = read_msg(&mut s);
    assert_eq!(
        (tag, &body[..]),
        (b'R', &[0u8, 0, 0, 0][..]),
        "expected AuthenticationOk"
    );
    assert_eq!(read_until_ready(&mut s), b'I');
    s
}

// ------------------------------------------------------------------ tests

#[test]
fn unknown_database_gets_3d000() {
    let c = Cluster::start(0);
    let p = Pooler::start(&c.pooler_config("transaction", "scram-sha-256", 2));
    rt().block_on(async {
        let bystander = connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(bystander.one("SELECT 1").await, "1");
        let e = try_connect(&p.url("app", "app_pw", "nope"))
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
            let bystander = connect(&p.url("app", "app_pw", "app")).await;
            assert_eq!(bystander.one("SELECT current_user").await, "app");
            for (user, pw) in [
                ("app", "wrong"),
                ("md5user", "wrong"),
                ("plainuser", "wrong"),
                ("nobody", "whatever"),
            ] {
                let e = try_connect(&p.url(user, pw, "app"))
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
                let ok = connect(&p.url(user, pw, "app")).await;
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
        match try_connect(url).await {
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
        let e = try_connect(&url)
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
        let a = connect(&url).await;
        a.q("BEGIN").await;
        a.q("SELECT 1").await;
        a.q("INSERT INTO w VALUES (1)").await;
        let b = connect(&url).await;
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
        let bystander = connect(&p.url("app", "app_pw", "app")).await;
        for (what, bytes, close, codes, reset_ok) in cases {
            let mut s = raw(&p);
            s.write_all(&bytes).unwrap();
            if close {
                s.shutdown(Shutdown::Write).unwrap();
            }
            let reply = read_to_close(&mut s);
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
        let bystander = connect(&p.url("app", "app_pw", "app")).await;
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
                let mut s = raw_login(&p);
                if in_txn {
                    s.write_all(&query_msg("BEGIN")).unwrap();
                    assert_eq!(read_until_ready(&mut s), b'T');
                    s.write_all(&query_msg("INSERT INTO m VALUES (1)")).unwrap();
                    assert_eq!(read_until_ready(&mut s), b'T');
                }
                let _ = s.write_all(&bytes); // pgsluice may close before reading it all
                let reply = read_to_close(&mut s);
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
        let bystander = connect(&p.url("app", "app_pw", "app")).await;
        assert_eq!(bystander.one("SELECT 1").await, "1");

        let mut silent = raw(&p);
        let mut half_startup = raw(&p);
        half_startup.write_all(&40u32.to_be_bytes()).unwrap();
        let mut mid_auth = raw(&p);
        mid_auth
            .write_all(&startup_packet(&[("user", "app"), ("database", "app")]))
            .unwrap();
        let (tag, body) = read_msg(&mut mid_auth);
        assert_eq!(
            (tag, &body[..4]),
            (b'R', &10u32.to_be_bytes()[..]),
            "expected a SASL request"
        );

        let waits = std::thread::spawn(move || {
            [
                ("silent", read_to_close(&mut silent)),
                ("half a startup packet", read_to_close(&mut half_startup)),
                ("stopped mid-authentication", read_to_close(&mut mid_auth)),
            ]
        });
        // meanwhile, others work
        for i in 0..5 {
            assert_eq!(
                psql_ok(&p.url("app", "app_pw", "app"), &format!("SELECT {i}")),
                i.to_string()
            );
        }
        for (what, reply) in waits.join().unwrap() {
            assert!(
                reply.end != End::Open,
                "{what}: still connected after 10 s: {reply:?}"
            );
            assert!(reply.leftover.is_empty(), "{what}: {reply:?}");
            assert!(
                reply.msgs.iter().all(|(t, _)| *t == b'E'),
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
            let a = connect(&url).await;
            a.q("BEGIN").await;
            a.q("INSERT INTO g VALUES (1)").await;
            assert_eq!(a.one("SELECT count(*) FROM g").await, "1");
            if crash {
                a.kill().await;
            } else {
                a.close().await;
            }
            // the next client gets the (only) server, clean
            let b = connect(&url).await;
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
        let a = connect(&url).await;
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
        let b = connect(&url).await;
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
        let a = connect(&url).await;
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
        let b = connect(&url).await;
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
            let t = connect(&url).await;
            t.q("BEGIN").await;
            t.q(&format!("INSERT INTO it VALUES ('{mode}')")).await;
            idlers.push((mode, t));
            let b = connect(&url).await;
            assert_eq!(b.one("SELECT 1").await, "1");
            bystanders.push(b);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (mode, t) in idlers {
            let what =
                format!("{mode} mode: client idle in transaction > idle_transaction_timeout cut");
            let fatal = t.wait_closed(Duration::from_secs(5), &what).await;
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
