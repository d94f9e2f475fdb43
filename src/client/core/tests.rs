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
use crate::registry::clients::{ClientInfo, ClientMeta};
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
    let tally =
        crate::metrics::Tally::new(Arc::new(PoolMetrics::new(key, 1, now)), true, None, now);
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

pub(super) fn link() -> ServerLink {
    ServerLink {
        id: 1,
        backend_pid: 100,
        addr: "127.0.0.1:5432".parse().unwrap(),
        local_port: 1,
        created: Instant::now(),
    }
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
            Some(Action::Release(s, how)) => (s, how),
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
fn our_settings_are_answered_here_even_with_multibyte_text() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET pgsluice.route €x"));
    r.expect_checkout();
    // Not ours (it does not parse): it goes to the server as any statement would.
    assert_eq!(r.sent_to_server(), query("SET pgsluice.route €x"));
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET pgsluice.route = primary"));
    assert!(r.action().is_none(), "no server needed");
    assert_eq!(tags(&r.sent_to_client()), "CZ");
}

#[test]
fn a_client_setting_is_replayed_on_the_next_server_first() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET work_mem = '8MB'"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    assert!(
        state.gucs.get("work_mem").is_some(),
        "the server's record has the setting"
    );
    // The next transaction gets another server: the setting goes first, hidden.
    r.client(&query("SELECT 2"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SET work_mem = '8MB'"));
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        r.sent_to_client(),
        Vec::<u8>::new(),
        "the replay's answer is hidden"
    );
    assert_eq!(r.sent_to_server(), query("SELECT 2"));
}

#[test]
fn a_failed_replay_is_an_error_for_the_statement_and_clears_the_setting() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SET ROLE gone"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("SET");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    r.expect_release();
    r.client(&query("SELECT current_user"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SET ROLE gone"));
    let mut answer = error("22023", "role \"gone\" does not exist");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let out = r.sent_to_client();
    assert_eq!(tags(&out), "EZ");
    assert!(String::from_utf8_lossy(&out).contains("role \"gone\" does not exist"));
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.gucs.get("role").is_none());
    assert!(
        r.core.settings().get("role").is_none(),
        "the client can go on"
    );
    // The next statement runs without the role.
    r.client(&query("SELECT current_user"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("SELECT current_user"));
}

#[test]
fn reset_of_a_startup_value_is_replayed_before_the_next_unit() {
    let mut r = rig(PoolMode::Session, &[("datestyle", "Postgres, MDY")]);
    r.client(&query("SHOW datestyle"));
    r.expect_checkout();
    // A fresh server gets the startup value first.
    assert_eq!(
        r.sent_to_server(),
        query("SELECT pg_catalog.set_config('datestyle', 'Postgres, MDY', false)")
    );
    let mut answer = msg(b'S', b"DateStyle\0Postgres, MDY\0");
    answer.extend(row("Postgres, MDY"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_server(), query("SHOW datestyle"));
    let mut answer = row("Postgres, MDY");
    answer.extend(complete("SHOW"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    r.client(&query("RESET datestyle"));
    assert_eq!(r.sent_to_server(), query("RESET datestyle"));
    let mut answer = msg(b'S', b"DateStyle\0ISO, MDY\0");
    answer.extend(complete("RESET"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    // The server is at its own default now; the client is back at its startup value.
    r.client(&query("SHOW datestyle"));
    assert_eq!(
        r.sent_to_server(),
        query("SELECT pg_catalog.set_config('datestyle', 'Postgres, MDY', false)")
    );
}

#[test]
fn a_named_parse_the_server_has_is_answered_here() {
    let registry = Arc::new(Registry::default());
    let mut r = rig_with(PoolMode::Transaction, &[], registry.clone());
    let mut unit = parse("s1", "SELECT 1");
    unit.extend(bind("s1"));
    unit.extend(execute());
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    let sent = r.sent_to_server();
    assert!(
        String::from_utf8_lossy(&sent).contains("sluice_1"),
        "renamed"
    );
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'2', b""));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "12CZ");
    let (state, _) = r.expect_release();
    // A second client prepares the same statement on that server: no Parse goes out.
    let mut r2 = rig_with(PoolMode::Transaction, &[], registry);
    r2.client(&unit);
    assert!(matches!(r2.action(), Some(Action::NeedServer { .. })));
    r2.attach(state);
    assert_eq!(tags(&r2.sent_to_server()), "BES");
    let mut answer = msg(b'2', b"");
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r2.server(&answer);
    assert_eq!(
        tags(&r2.sent_to_client()),
        "12CZ",
        "ParseComplete made here, in order"
    );
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
fn errors_about_a_mapped_sql_statement_name_the_clients_statement() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE p(int) AS SELECT $1 + 1"));
    r.expect_checkout();
    assert_eq!(
        r.sent_to_server(),
        query("PREPARE sluice_1(int) AS SELECT $1 + 1")
    );
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    r.client(&query("EXECUTE p(1, 2)"));
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    assert_eq!(r.sent_to_server(), query("EXECUTE sluice_1(1, 2)"));
    let mut answer = msg(
        b'E',
        b"SERROR\0C42601\0Mwrong number of parameters for prepared statement \"sluice_1\"\0P16\0\0",
    );
    answer.extend(ready(b'I'));
    r.server(&answer);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("prepared statement \"p\""), "{out}");
    assert!(out.contains("P9\0"), "position in the client's text: {out}");
}

fn routed_rig() -> Rig {
    let mut r = rig(PoolMode::Transaction, &[]);
    let db = crate::router::route::tests::db_with_ready_replica(1000);
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    let route = Route::new(
        db,
        crate::router::Classifier::new(allow),
        crate::router::route::Force::Auto,
    );
    r.core.route = Some(Box::new(route));
    r
}

#[test]
fn a_write_pipelined_behind_a_read_moves_to_the_primary() {
    let mut r = routed_rig();
    let mut pipeline = query("SELECT 1");
    pipeline.extend(query("INSERT INTO t VALUES (1)"));
    pipeline.extend(query("SELECT count(*) FROM t"));
    r.client(&pipeline);
    match r.action() {
        Some(Action::NeedServer { node: 1 }) => {}
        other => panic!("read goes to the replica: {other:?}"),
    }
    r.core.attached(ServerState::new(1), 1, link(), r.now);
    assert_eq!(
        r.sent_to_server(),
        query("SELECT 1"),
        "the write waits for the read"
    );
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(row("1"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    r.expect_release();
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("the write goes to the primary: {other:?}"),
    }
    r.core.attached(ServerState::new(2), 0, link(), r.now);
    let mut rest = query("INSERT INTO t VALUES (1)");
    rest.extend(query("SELECT count(*) FROM t"));
    assert_eq!(r.sent_to_server(), rest);
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

fn describe_statement(name: &str) -> Vec<u8> {
    msg(b'D', format!("S{name}\0").as_bytes())
}

#[test]
fn the_unnamed_statement_follows_the_client_to_another_server() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut unit = parse("", "SELECT 1 AS a");
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), unit);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    r.expect_release();
    // The next unit describes it, on a server that never saw the Parse.
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(ServerState::new(2));
    let mut want = parse("", "SELECT 1 AS a");
    want.extend(unit.clone());
    assert_eq!(r.sent_to_server(), want, "the Parse goes again first");
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b't', b"\0\0"));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "tTZ",
        "its ParseComplete is hidden"
    );
}

#[test]
fn a_parse_of_execute_runs_the_mapped_statement() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE test AS SELECT 1 AS first"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    let mut unit = parse("", "EXECUTE test");
    unit.extend(describe_statement(""));
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "EXECUTE sluice_1");
    want.extend(describe_statement(""));
    want.extend(sync());
    assert_eq!(r.sent_to_server(), want);
}

/// psql's `PREPARE test ...; EXECUTE test \gdesc` in transaction mode, as recorded:
/// the PREPARE and the Parse + Sync run on server 1, the Describe + Sync gets server 2,
/// which has neither the unnamed statement nor `sluice_1` (issue 17, C8/C12: the
/// re-sent Parse of `EXECUTE sluice_1` alone was described as NoData there).
#[test]
fn gdesc_of_execute_prepares_the_statement_where_the_describe_lands() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE test AS SELECT 1 AS first, 2 AS second"));
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
    let (state, _) = r.expect_release();
    let mut unit = parse("", "EXECUTE test");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "EXECUTE sluice_1");
    want.extend(sync());
    assert_eq!(r.sent_to_server(), want);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1Z");
    r.expect_release();
    // The Describe lands on a server that never saw the statement.
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(ServerState::new(2));
    let mut want = query("PREPARE sluice_1  AS SELECT 1 AS first, 2 AS second");
    want.extend(parse("", "EXECUTE sluice_1"));
    want.extend(unit.clone());
    assert_eq!(
        String::from_utf8_lossy(&r.sent_to_server()),
        String::from_utf8_lossy(&want),
        "the statement is prepared there, then the unnamed Parse goes again"
    );
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    answer.extend(msg(b'1', b""));
    answer.extend(msg(b't', b"\0\0"));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "tTZ",
        "pgsluice's PREPARE and ParseComplete are hidden"
    );
    r.expect_release();
}

#[test]
fn resetting_a_setting_the_server_dropped_is_not_the_next_clients_error() {
    // Another client set a placeholder; its extension loaded since, and the server
    // dropped the name. Resetting it fails as unknown: the server is as wanted anyway.
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("SELECT 1"));
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected NeedServer, got {other:?}"),
    }
    let mut state = ServerState::new(1);
    let mut gucs = Gucs::default();
    gucs.set_value("plpgsql.extra_foo_warnings", "true");
    state.gucs = Arc::new(gucs);
    r.attach(state);
    let replay = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(replay.contains("plpgsql.extra_foo_warnings"), "{replay}");
    let mut answer = error("42602", "invalid configuration parameter name");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let mut answer = row("1");
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "DCZ");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.gucs.is_empty());
}

#[test]
fn a_write_after_another_clients_is_preceded_by_a_pipelined_sequence_discard() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    r.core
        .set_opaque_check(crate::router::Classifier::new(allow));
    let on_server = |r: &mut Rig, sql: &str, owner: u32| {
        r.client(&query(sql));
        match r.action() {
            Some(Action::NeedServer { node: 0 }) => {}
            other => panic!("expected NeedServer, got {other:?}"),
        }
        let mut state = ServerState::new(1);
        state.seq_owner = owner;
        r.attach(state);
        r.sent_to_server()
    };
    let finish = |r: &mut Rig, hidden: bool| {
        let mut answer = Vec::new();
        if hidden {
            answer.extend(complete("DISCARD SEQUENCES"));
            answer.extend(ready(b'I'));
        }
        answer.extend(complete("INSERT 0 1"));
        answer.extend(ready(b'I'));
        r.server(&answer);
        assert_eq!(
            tags(&r.sent_to_client()),
            "CZ",
            "the discard's answer is hidden"
        );
        r.expect_release().0
    };
    // A plain read on a server holding another client's values: nothing added.
    assert_eq!(on_server(&mut r, "SELECT 1", 99), query("SELECT 1"));
    assert_eq!(finish(&mut r, false).seq_owner, 99);
    // A write there: the discard goes first, in the same write.
    let mut want = query("DISCARD SEQUENCES");
    want.extend(query("INSERT INTO t VALUES (1)"));
    assert_eq!(on_server(&mut r, "INSERT INTO t VALUES (1)", 99), want);
    assert_eq!(finish(&mut r, true).seq_owner, 7);
    // On a server holding only this client's values: nothing added.
    let sql = "INSERT INTO t VALUES (2)";
    assert_eq!(on_server(&mut r, sql, 7), query(sql));
    assert_eq!(finish(&mut r, false).seq_owner, 7);
}

/// pgsluice's own Query on the server (here: the settings read after a statement calling
/// a function outside the allowlist) drops the unnamed statement there: a Describe on
/// the same server re-sends the Parse first.
#[test]
fn the_unnamed_statement_is_parsed_again_after_pgsluices_own_query() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    r.core
        .set_opaque_check(crate::router::Classifier::new(allow));
    let mut unit = parse("", "SELECT f(1) AS a");
    unit.extend(sync());
    r.client(&unit);
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), unit);
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(r.sent_to_client(), answer);
    let chore = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(chore.contains("pg_settings"), "{chore}");
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(complete("SELECT 0"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, _) = r.expect_release();
    let mut unit = describe_statement("");
    unit.extend(sync());
    r.client(&unit);
    assert!(matches!(r.action(), Some(Action::NeedServer { .. })));
    r.attach(state);
    let mut want = parse("", "SELECT f(1) AS a");
    want.extend(unit.clone());
    assert_eq!(r.sent_to_server(), want, "the Parse goes again first");
}
