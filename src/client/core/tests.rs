//! The session core over recorded message sequences: no sockets, no PostgreSQL. Each test
//! plays the client's and the server's messages into the core and checks what it sends
//! each way and what it asks the driver to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::*;
use crate::metrics::pool::PoolMetrics;
use crate::pool::PoolKey;
use crate::prepare::Registry;
use crate::registry::clients::{ClientInfo, ClientMeta, ServerLink};
use crate::server::varcache::Gucs;

pub(super) fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

pub(super) fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', format!("{sql}\0").as_bytes())
}

pub(super) fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

pub(super) fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}

pub(super) fn error(code: &str, message: &str) -> Vec<u8> {
    msg(b'E', format!("SERROR\0C{code}\0M{message}\0\0").as_bytes())
}

pub(super) fn row(value: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u16(1);
    b.put_i32(value.len() as i32);
    b.put_slice(value.as_bytes());
    msg(b'D', &b)
}

pub(super) fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}

pub(super) fn bind(name: &str) -> Vec<u8> {
    msg(b'B', format!("\0{name}\0\0\0\0\0\0\0").as_bytes())
}

pub(super) fn execute() -> Vec<u8> {
    msg(b'E', b"\0\0\0\0\0")
}

pub(super) fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

/// A core and what came out of it.
pub(super) struct Rig {
    pub core: Core,
    pub now: Instant,
}

pub(super) fn rig(mode: PoolMode, startup: &[(&str, &str)]) -> Rig {
    rig_with(mode, startup, Arc::new(Registry::default()))
}

pub(super) fn rig_with(mode: PoolMode, startup: &[(&str, &str)], registry: Arc<Registry>) -> Rig {
    let limits = Limits {
        mode,
        max_message: 1 << 20,
        idle_txn: Some(Duration::from_secs(10)),
        reset_query: "DISCARD ALL".into(),
        rewrite: mode != PoolMode::Session,
        timeouts: None,
        wait_timeout: None,
        park_after: None,
        listen_here: mode != PoolMode::Session,
    };
    rig_limits(limits, startup, registry, 200)
}

/// A core with these limits, startup settings, statement registry and limit of
/// statements per server.
pub(super) fn rig_limits(
    limits: Limits,
    startup: &[(&str, &str)],
    registry: Arc<Registry>,
    max_prepared: usize,
) -> Rig {
    let now = Instant::now();
    let key = PoolKey {
        database: "app".into(),
        user: "app".into(),
        node: 0,
    };
    let info = Arc::new(ClientInfo::new(
        7,
        "app".into(),
        "app".into(),
        Some(0),
        ClientMeta::default(),
        None,
    ));
    let tally = crate::metrics::Tally::new(Arc::new(PoolMetrics::new(key, 1, now)), true, None);
    let mut g = Gucs::default();
    for (n, v) in startup {
        g.set_value(n, v);
    }
    let core = Core::new(
        7,
        limits,
        SessionState::new(Arc::new(g)),
        Mapping::new(registry, max_prepared),
        None,
        Observe::new(info, tally),
    );
    Rig { core, now }
}

pub(super) fn link() -> std::sync::Arc<ServerLink> {
    std::sync::Arc::new(ServerLink {
        id: 1,
        backend_pid: 100,
        backend_secret: 7,
        addr: "127.0.0.1:5432".parse().unwrap(),
        unix: None,
        local_port: 1,
        created: Instant::now(),
    })
}

impl Rig {
    pub fn client(&mut self, bytes: &[u8]) {
        self.core.client_buf().extend_from_slice(bytes);
        self.core.client_data(self.now);
    }

    pub fn server(&mut self, bytes: &[u8]) {
        self.core
            .server_buf()
            .expect("a server is attached")
            .extend_from_slice(bytes);
        self.core.server_data(self.now);
    }

    pub fn action(&mut self) -> Option<Action> {
        self.core.next_action(self.now)
    }

    pub fn attach(&mut self, state: ServerState) {
        self.core.attached(state, 0, link(), self.now);
    }

    /// Expects a request for a server and attaches a fresh one.
    pub fn expect_checkout(&mut self) {
        match self.action() {
            Some(Action::NeedServer { node: 0 }) => {}
            other => panic!("expected NeedServer, got {other:?}"),
        }
        self.attach(ServerState::new(1));
    }

    pub fn expect_release(&mut self) -> (ServerState, Release) {
        match self.action() {
            Some(Action::Release(s, how)) => (s.into_state(), how),
            other => panic!("expected Release, got {other:?}"),
        }
    }

    pub fn sent_to_server(&mut self) -> Vec<u8> {
        self.core.sout.take_all()
    }

    pub fn sent_to_client(&mut self) -> Vec<u8> {
        self.core.cout.take_all()
    }
}

/// The tags of the messages in `bytes`.
pub(super) fn tags(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while let Ok(Some(h)) = crate::protocol::header(&bytes[pos..], usize::MAX) {
        out.push(h.tag as char);
        pos += h.frame_len;
        if pos >= bytes.len() {
            break;
        }
    }
    out
}

#[test]
fn a_query_takes_a_server_and_gives_it_back_at_ready_for_query() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(row("1"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert_eq!(state.status, b'I');
    assert!(r.action().is_none());
}

#[test]
fn a_transaction_keeps_its_server_and_idle_in_transaction_ends_it() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("BEGIN"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    assert!(
        r.action().is_none(),
        "the server stays inside the transaction"
    );
    let deadline = r.core.deadline().expect("idle-in-transaction deadline");
    r.core.tick(deadline);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::IdleInTransaction));
    assert!(matches!(r.action(), Some(Action::Close { .. })));
    let out = r.sent_to_client();
    assert!(String::from_utf8_lossy(&out).contains("25P03"));
}

#[test]
fn a_client_gone_mid_query_closes_and_cancels_its_server() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT pg_sleep(10)"));
    r.expect_checkout();
    r.sent_to_server();
    r.core.client_gone(r.now);
    let (_, how) = r.expect_release();
    assert_eq!(
        how,
        Release::CloseAndCancel(CloseReason::ClientGoneMidQuery)
    );
    assert!(matches!(r.action(), Some(Action::Close { .. })));
}

#[test]
fn a_client_gone_inside_a_transaction_rolls_it_back_first() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("BEGIN"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    r.core.client_gone(r.now);
    assert_eq!(r.sent_to_server(), query("ROLLBACK"));
    let mut answer = complete("ROLLBACK");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(matches!(r.action(), Some(Action::Close { .. })));
}

#[test]
fn a_malformed_frame_is_a_protocol_violation() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(b"Q\x00\x00\x00\x02");
    assert!(matches!(r.action(), Some(Action::Close { .. })));
    assert!(String::from_utf8_lossy(&r.sent_to_client()).contains("08P01"));
}

#[test]
fn terminate_ends_the_session() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&msg(b'X', b""));
    assert!(matches!(r.action(), Some(Action::Close { .. })));
}

#[test]
fn a_server_message_larger_than_max_message_size_is_refused_not_buffered() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    r.sent_to_server();
    // An ErrorResponse declaring 512 MiB: it would have to be held whole.
    let mut huge = vec![b'E'];
    huge.extend_from_slice(&(512 * 1024 * 1024i32).to_be_bytes());
    huge.extend_from_slice(b"SERROR\0");
    r.server(&huge);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    assert!(matches!(r.action(), Some(Action::Close { .. })));
    assert!(String::from_utf8_lossy(&r.sent_to_client()).contains("exceeds max_message_size"));
    // A DataRow that large streams through instead.
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT big"));
    r.expect_checkout();
    r.sent_to_server();
    let mut row = vec![b'D'];
    row.extend_from_slice(&(512 * 1024 * 1024i32).to_be_bytes());
    row.extend_from_slice(&[0u8; 100]);
    r.server(&row);
    assert!(r.action().is_none());
    assert_eq!(r.sent_to_client().len(), row.len(), "streamed as it came");
}
