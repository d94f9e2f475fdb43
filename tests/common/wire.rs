//! The tests' one raw-protocol client: a frontend that speaks the PostgreSQL wire protocol
//! by hand, for what drivers never send (hand-made pipelines, Flush without Sync, bad
//! lengths, garbage startup packets) and to see every message pgsluice answers with.
//!
//! [`Raw`] logs in with trust, cleartext or md5 (not SCRAM: pools under test use those for
//! raw clients), sends bytes the test built with the message builders below, and reads
//! whole backend messages ([`Msg`]). Every read and write is bounded, so a hang fails the
//! test instead of blocking it.

use std::io::ErrorKind;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Pooler;

/// Bound on a connect or a write.
const IO_LIMIT: Duration = Duration::from_secs(10);
/// Silence after which [`Raw::recv`] fails the test.
const SILENCE: Duration = Duration::from_secs(20);
/// Largest message length pgsluice is expected to send these tests.
const MAX_MESSAGE: usize = 1 << 20;

// ------------------------------------------------------------------ messages

/// One backend message: tag and body (without the length).
pub struct Msg {
    pub tag: u8,
    pub body: Bytes,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(120)];
        write!(f, "{}:{}", self.tag as char, String::from_utf8_lossy(shown))
    }
}

impl Msg {
    /// Null-terminated strings of the body (ParameterStatus, CommandComplete).
    pub fn cstrs(&self) -> Vec<String> {
        self.body
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    /// A field of an ErrorResponse / NoticeResponse by its code letter (`C`: SQLSTATE).
    pub fn field(&self, code: u8) -> Option<String> {
        self.body
            .split(|&b| b == 0)
            .find(|f| f.first() == Some(&code))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    }

    /// Columns of a DataRow (None for NULL).
    pub fn columns(&self) -> Vec<Option<Bytes>> {
        let mut b = self.body.clone();
        let n = b.get_i16();
        (0..n)
            .map(|_| {
                let len = b.get_i32();
                (len >= 0).then(|| b.split_to(len as usize))
            })
            .collect()
    }

    /// Columns of a DataRow as text ("NULL" for NULL).
    pub fn texts(&self) -> Vec<String> {
        self.columns()
            .into_iter()
            .map(|c| {
                c.map_or("NULL".to_string(), |v| {
                    String::from_utf8_lossy(&v).into_owned()
                })
            })
            .collect()
    }

    /// Parameter type OIDs of a ParameterDescription.
    pub fn param_oids(&self) -> Vec<u32> {
        let mut b = self.body.clone();
        let n = b.get_i16();
        (0..n).map(|_| b.get_u32()).collect()
    }
}

/// The tags of `msgs` as one string ("12DCZ").
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// First column of every DataRow, as text.
pub fn data(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| m.texts()[0].clone())
        .collect()
}

/// SQLSTATE of the first ErrorResponse.
pub fn err_code(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| m.field(b'C'))
}

/// Transaction status byte of the last message, which must be a ReadyForQuery.
pub fn status(msgs: &[Msg]) -> char {
    let z = msgs.last().expect("messages");
    assert_eq!(z.tag, b'Z', "{msgs:?}");
    z.body[0] as char
}

// ------------------------------------------------------------------ frontend messages

/// A message: `tag`, the length, `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.push(tag);
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Appends `s` and its terminating NUL.
pub fn cstr(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(s.as_bytes());
    v.push(0);
}

/// A protocol 3.0 StartupMessage with `params` (user, database, ...).
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        cstr(&mut body, k);
        cstr(&mut body, v);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// Query (simple protocol).
pub fn query_msg(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    frame(b'Q', &b)
}

/// Parse: statement `name` (empty = unnamed), `sql`, declared parameter types.
pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut p = Vec::new();
    cstr(&mut p, name);
    cstr(&mut p, sql);
    p.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        p.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &p)
}

/// Bind of statement `stmt` to the unnamed portal, text parameters and results.
pub fn bind(stmt: &str, params: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, stmt);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for v in params {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    frame(b'B', &b)
}

/// Execute of the unnamed portal, all rows.
pub fn execute() -> Vec<u8> {
    let mut e = Vec::new();
    cstr(&mut e, "");
    e.extend_from_slice(&0i32.to_be_bytes());
    frame(b'E', &e)
}

/// Describe of statement (`kind` b'S') or portal (b'P') `name`.
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut d = vec![kind];
    cstr(&mut d, name);
    frame(b'D', &d)
}

/// Close of statement (`kind` b'S') or portal (b'P') `name`.
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut d = vec![kind];
    cstr(&mut d, name);
    frame(b'C', &d)
}

pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

pub fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

/// Parse (unnamed, no declared types) + Bind (text parameters) + Execute + Sync.
pub fn extended_batch(sql: &str, params: &[&str]) -> Vec<u8> {
    [parse("", sql, &[]), bind("", params), execute(), sync()].concat()
}

// ------------------------------------------------------------------ the client

/// A frontend on one TCP connection to pgsluice.
pub struct Raw {
    sock: TcpStream,
    buf: BytesMut,
    /// Drop NoticeResponse and ParameterStatus in [`Raw::recv`] (see [`Raw::replies_only`]).
    replies_only: bool,
}

impl Raw {
    /// A TCP connection to 127.0.0.1:`port`, nothing sent yet.
    pub async fn open(port: u16) -> Raw {
        let sock = tokio::time::timeout(IO_LIMIT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connect timed out")
            .expect("connect to pgsluice");
        Raw {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
            replies_only: false,
        }
    }

    /// Connects and logs in (trust, cleartext or md5); returns the client and the
    /// messages from the end of authentication up to and including the first
    /// ReadyForQuery. Panics on any other authentication request or an error.
    pub async fn connect(port: u16, user: &str, password: &str, db: &str) -> (Raw, Vec<Msg>) {
        let mut raw = Raw::open(port).await;
        raw.send(&startup_packet(&[("user", user), ("database", db)]))
            .await;
        loop {
            let m = raw.recv().await;
            match m.tag {
                b'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into().unwrap());
                    match code {
                        0 => break,
                        3 => {
                            let mut b = Vec::new();
                            cstr(&mut b, password);
                            raw.send(&frame(b'p', &b)).await;
                        }
                        5 => {
                            let salt: [u8; 4] = m.body[4..8].try_into().unwrap();
                            let hash = postgres_protocol::authentication::md5_hash(
                                user.as_bytes(),
                                password.as_bytes(),
                                salt,
                            );
                            let mut b = Vec::new();
                            cstr(&mut b, &hash);
                            raw.send(&frame(b'p', &b)).await;
                        }
                        other => panic!("raw client: unsupported auth request {other}"),
                    }
                }
                b'E' => panic!("login failed: {m:?}"),
                _ => panic!("unexpected message during auth: {m:?}"),
            }
        }
        let after = raw.until_ready().await;
        assert!(
            after.iter().all(|m| m.tag != b'E'),
            "login failed: {after:?}"
        );
        (raw, after)
    }

    /// Logs in as app/app_pw to database app of `p`.
    pub async fn app(p: &Pooler) -> Raw {
        Raw::connect(p.port, "app", "app_pw", "app").await.0
    }

    /// From now on [`Raw::recv`] drops NoticeResponse and ParameterStatus, which a server
    /// may send at any time: for tests that look at the replies to their messages only.
    pub fn replies_only(mut self) -> Raw {
        self.replies_only = true;
        self
    }

    /// Writes `bytes` (fails the test if that fails or blocks for 10 s).
    pub async fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).await.expect("write");
    }

    /// Writes `bytes`; an error is the caller's to judge (pgsluice may have closed).
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(IO_LIMIT, self.sock.write_all(bytes))
            .await
            .expect("write timed out")
    }

    /// Closes our sending side (the server reads EOF), keeps reading possible.
    pub async fn shutdown_write(&mut self) {
        tokio::time::timeout(IO_LIMIT, self.sock.shutdown())
            .await
            .expect("shutdown timed out")
            .expect("shutdown");
    }

    /// The next backend message (fails the test after 20 s of silence, on a close or on
    /// a length outside 4..1 MiB).
    pub async fn recv(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                assert!(
                    (4..MAX_MESSAGE).contains(&len),
                    "bad length from pgsluice: {:?}",
                    &self.buf[..5]
                );
                if self.buf.len() > len {
                    let mut m = self.buf.split_to(len + 1);
                    let tag = m[0];
                    m.advance(5);
                    if self.replies_only && (tag == b'N' || tag == b'S') {
                        continue;
                    }
                    return Msg {
                        tag,
                        body: m.freeze(),
                    };
                }
                self.buf.reserve(len + 1 - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(64 * 1024);
            }
            let n = tokio::time::timeout(SILENCE, self.sock.read_buf(&mut self.buf))
                .await
                .expect("no message from pgsluice within 20 s")
                .expect("read");
            assert!(n > 0, "pgsluice closed the connection");
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.recv().await;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends `parts` in one write; returns the replies through ReadyForQuery.
    pub async fn batch(&mut self, parts: &[Vec<u8>]) -> Vec<Msg> {
        self.send(&parts.concat()).await;
        self.until_ready().await
    }

    /// Reads until pgsluice closes the connection (or 10 s pass without a byte):
    /// the whole messages it sent, bytes left over, and how it ended.
    pub async fn read_to_close(&mut self) -> Reply {
        let end = loop {
            if self.buf.capacity() - self.buf.len() < 8192 {
                self.buf.reserve(64 * 1024);
            }
            match tokio::time::timeout(IO_LIMIT, self.sock.read_buf(&mut self.buf)).await {
                Err(_) => break End::Open,
                Ok(Ok(0)) => break End::Eof,
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => break End::Reset,
                Ok(Err(e)) => break End::Other(e.to_string()),
            }
        };
        let mut msgs = Vec::new();
        let mut rest = self.buf.split().freeze();
        while rest.len() >= 5 {
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len < 4 || rest.len() < len + 1 {
                break;
            }
            let mut m = rest.split_to(len + 1);
            let tag = m[0];
            m.advance(5);
            msgs.push(Msg { tag, body: m });
        }
        Reply {
            msgs,
            leftover: rest.to_vec(),
            end,
        }
    }
}

// ------------------------------------------------------------------ how a connection ended

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub enum End {
    Eof,
    Reset,
    /// Still open after 10 s of silence.
    Open,
    Other(String),
}

/// Everything pgsluice sent until it closed: whole messages, leftover bytes, the end.
#[derive(Debug)]
pub struct Reply {
    pub msgs: Vec<Msg>,
    pub leftover: Vec<u8>,
    pub end: End,
}

/// The connection was refused properly: nothing but one ErrorResponse with one of
/// `codes` (or nothing at all), then a close (a reset only after the error, or when
/// `reset_ok`: pgsluice closes with our unread bytes in its buffer).
pub fn assert_refused(what: &str, r: &Reply, codes: &[&str], reset_ok: bool) {
    assert!(r.leftover.is_empty(), "{what}: partial message: {r:?}");
    assert!(r.end != End::Open, "{what}: connection left open: {r:?}");
    match r.msgs.as_slice() {
        [] => assert!(
            r.end == End::Eof || (reset_ok && r.end == End::Reset),
            "{what}: closed without an error, uncleanly: {r:?}"
        ),
        [m] if m.tag == b'E' => {
            let c = m.field(b'C').unwrap_or_default();
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
