//! The session's routing over recorded message sequences: replays of read units (simple
//! and extended) that a replica refused or lost, and writes pipelined behind a read.
//! (Read-your-writes probes: `ryw_tests.rs`.)

use std::sync::Arc;

use super::super::tests::{
    Rig, bind, complete, error, execute, link, msg, parse, query, ready, rig, row, sync, tags,
};
use super::super::{Action, Release, Route};
use crate::config::PoolMode;
use crate::router::route::Force;
use crate::router::{Allowlist, Classifier, format_lsn};
use crate::server::{CloseReason, ServerState};

/// A transaction-mode session on a database whose replica (node 1) has replayed up to
/// 1000 and keeps up.
pub(in super::super) fn routed() -> Rig {
    let mut r = rig(PoolMode::Transaction, &[]);
    let db = crate::router::route::tests::db_with_ready_replica(1000);
    let allow = Arc::new(Allowlist::new(&[]));
    let route = Route::new(db, Classifier::new(allow), Force::Auto);
    r.core.route = Some(Box::new(route));
    r
}

pub(in super::super) fn route(r: &mut Rig) -> &mut Route {
    r.core.route.as_mut().expect("routed")
}

pub(in super::super) fn expect_checkout_on(r: &mut Rig, node: usize) {
    match r.action() {
        Some(Action::NeedServer { node: n }) if n == node => {}
        other => panic!("expected NeedServer on {node}, got {other:?}"),
    }
    r.attach(ServerState::new(node as u64 + 10));
}

pub(in super::super) fn probe_answer(lsn: u64) -> Vec<u8> {
    let mut a = msg(b'T', b"\0\0");
    a.extend(row(&format_lsn(lsn)));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

pub(in super::super) fn select_answer() -> Vec<u8> {
    let mut a = msg(b'T', b"\0\0");
    a.extend(row("1"));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

pub(in super::super) fn extended_unit(name: &str) -> Vec<u8> {
    let mut u = parse(name, "SELECT 1");
    u.extend(bind(name));
    u.extend(msg(b'D', b"P\0"));
    u.extend(execute());
    u.extend(sync());
    u
}

#[test]
fn an_extended_read_refused_by_a_replica_is_replayed_on_the_primary() {
    let mut r = routed();
    let unit = extended_unit("");
    r.client(&unit);
    expect_checkout_on(&mut r, 1);
    assert_eq!(r.sent_to_server(), unit);
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'2', b""));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(error(
        "25006",
        "cannot execute nextval() in a read-only transaction",
    ));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert!(
        r.sent_to_client().is_empty(),
        "nothing of the refused attempt"
    );
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), unit, "the same unit, on the primary");
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'2', b""));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(row("1"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "12TDCZ");
}

#[test]
fn a_named_statement_read_lost_with_its_replica_is_replayed_once_elsewhere() {
    let mut r = routed();
    let unit = extended_unit("s1");
    r.client(&unit);
    expect_checkout_on(&mut r, 1);
    let sent = r.sent_to_server();
    assert!(String::from_utf8_lossy(&sent).contains("sluice_"), "mapped");
    // The replica's ParseComplete arrives, then the connection dies.
    r.server(&msg(b'1', b""));
    assert!(r.sent_to_client().is_empty(), "held until the read ran");
    r.core.server_lost("connection reset", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    let again = r.sent_to_server();
    assert_eq!(tags(&again), "PBDES", "prepared again on the new server");
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'2', b""));
    answer.extend(msg(b'T', b"\0\0"));
    answer.extend(row("1"));
    answer.extend(complete("SELECT 1"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "12TDCZ",
        "one ParseComplete, as if the first attempt had never been"
    );
    r.expect_release();
    // The name works afterwards, on a server that has never seen it.
    let mut again = bind("s1");
    again.extend(execute());
    again.extend(sync());
    r.client(&again);
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "PBES");
}

/// A replica stopped in the middle of a statement flushes what it has, rows included,
/// with its warning before it closes (`tests/routing.rs`
/// `replica_stopped_mid_run_then_rejoins` caught this one in about 40 runs): a small answer
/// is held whole, so the read still goes elsewhere, and the client sees one answer.
#[test]
fn a_replica_lost_in_the_middle_of_a_small_answer_replays_the_read() {
    let mut r = routed();
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    let mut partial = msg(b'T', b"\0\0");
    partial.extend(row("1"));
    partial.extend(msg(
        b'N',
        b"SWARNING\0C57P01\0Mterminating connection due to immediate shutdown command\0\0",
    ));
    r.server(&partial);
    assert!(r.sent_to_client().is_empty(), "held until its end");
    r.core.server_lost("server closed the connection", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "Q", "the read, again");
    r.server(&select_answer());
    assert_eq!(
        tags(&r.sent_to_client()),
        "TDCZ",
        "one answer, the second server's"
    );
}

/// An answer larger than `MAX_HELD_ANSWER` streams; once rows of it reached the client, a
/// lost replica ends the session (08006).
#[test]
fn an_answer_past_the_held_size_is_never_replayed() {
    let mut r = routed();
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    let big = "x".repeat(super::super::retry::MAX_HELD_ANSWER);
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(row(&big));
    r.server(&answer);
    assert_eq!(
        r.sent_to_client(),
        answer,
        "the rows went out with what was held"
    );
    r.core.server_lost("connection reset", r.now);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("08006"), "{out}");
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
    // The write-LSN read goes right behind the lone write (`write_lsn.rs`).
    let mut rest = query("INSERT INTO t VALUES (1)");
    rest.extend(super::super::probe_sql::lsn_read(true));
    rest.extend(query("SELECT count(*) FROM t"));
    assert_eq!(r.sent_to_server(), rest);
}

/// tokio-postgres closes a statement it prepared for one query (Close, Sync) as soon as
/// the query is answered. pgsluice answers the Close; the Sync goes to a replica. A
/// replica lost then must not end the session: the unit goes again elsewhere.
#[test]
fn a_close_and_sync_lost_with_its_replica_is_replayed_elsewhere() {
    let mut r = routed();
    r.client(&extended_unit("s1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    r.server(&extended_answer());
    assert_eq!(tags(&r.sent_to_client()), "12TDCZ");
    r.expect_release();
    let mut close = msg(b'C', b"Ss1\0");
    close.extend(sync());
    r.client(&close);
    expect_checkout_on(&mut r, 1);
    assert_eq!(tags(&r.sent_to_server()), "S", "pgsluice answers the Close");
    r.core.server_lost("connection reset", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "S");
    r.server(&ready(b'I'));
    assert_eq!(
        tags(&r.sent_to_client()),
        "3Z",
        "one CloseComplete, as if the first attempt had never been"
    );
    r.expect_release();
    // The name is gone, as the client asked: a Bind of it goes unmapped, for the
    // server's own error.
    let mut again = bind("s1");
    again.extend(execute());
    again.extend(sync());
    r.client(&again);
    expect_checkout_on(&mut r, 0);
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(sent.contains("s1") && !sent.contains("sluice_"), "{sent:?}");
}

/// The same Close and Sync, with the client's next read right behind it in one write:
/// both go again when the replica is lost before answering.
#[test]
fn a_read_pipelined_behind_a_close_survives_a_lost_replica() {
    let mut r = routed();
    let mut units = msg(b'C', b"Ss9\0");
    units.extend(sync());
    units.extend(extended_unit(""));
    r.client(&units);
    expect_checkout_on(&mut r, 1);
    assert_eq!(tags(&r.sent_to_server()), "SPBDES");
    r.core.server_lost("connection reset", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "SPBDES", "both units again");
    let mut answer = ready(b'I');
    answer.extend(extended_answer());
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "3Z12TDCZ",
        "one answer to each, as if the first attempt had never been"
    );
    r.expect_release();
}

fn extended_answer() -> Vec<u8> {
    let mut a = msg(b'1', b"");
    a.extend(msg(b'2', b""));
    a.extend(msg(b'T', b"\0\0"));
    a.extend(row("1"));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

/// Two pipelined reads: the first one's answer (rows included) goes to the client as it
/// comes; the second, lost before its answer, goes again alone.
#[test]
fn a_read_pipelined_behind_an_answered_one_goes_again_alone() {
    let mut r = routed();
    let mut units = extended_unit("");
    units.extend(query("SELECT 2"));
    r.client(&units);
    expect_checkout_on(&mut r, 1);
    assert_eq!(tags(&r.sent_to_server()), "PBDESQ");
    r.server(&extended_answer());
    assert_eq!(
        tags(&r.sent_to_client()),
        "12TDCZ",
        "not held for the unit behind"
    );
    r.core.server_lost("connection reset", r.now);
    r.expect_release();
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "Q", "only the unanswered unit");
    r.server(&select_answer());
    assert_eq!(tags(&r.sent_to_client()), "TDCZ");
    r.expect_release();
}

/// A first unit whose rows reached the client cannot go again, but the unit behind it,
/// still unanswered when the replica is lost after the first one's end, does.
#[test]
fn a_read_behind_one_with_rows_goes_again_once_that_one_ended() {
    let mut r = routed();
    let mut units = query("SELECT 1");
    units.extend(query("SELECT 2"));
    r.client(&units);
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    let mut rows = msg(b'T', b"\0\0");
    rows.extend(row("1"));
    r.server(&rows);
    assert_eq!(tags(&r.sent_to_client()), "TD", "rows go as they come");
    let mut end = complete("SELECT 1");
    end.extend(ready(b'I'));
    r.server(&end);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    r.core.server_lost("connection reset", r.now);
    r.expect_release();
    expect_checkout_on(&mut r, 0);
    assert_eq!(tags(&r.sent_to_server()), "Q");
    r.server(&select_answer());
    assert_eq!(tags(&r.sent_to_client()), "TDCZ");
}

/// A unit behind one that left a transaction open runs inside it: it cannot go
/// elsewhere alone, and a replica lost then ends the session as any lost transaction.
#[test]
fn a_read_behind_one_that_opened_a_transaction_is_not_replayed_alone() {
    let mut r = routed();
    let mut units = query("BEGIN READ ONLY");
    units.extend(query("SELECT 2"));
    r.client(&units);
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    let mut begun = complete("BEGIN");
    begun.extend(ready(b'T'));
    r.server(&begun);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    r.core.server_lost("connection reset", r.now);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("08006"), "{out}");
}

/// A session closed (KILL, shutdown) while a kept read's answer is held: the client is
/// told why, not left with the error behind the held output.
#[test]
fn a_session_closed_while_a_read_is_kept_tells_the_client() {
    let mut r = routed();
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    r.server(&msg(b'T', b"\0\0"));
    assert!(r.sent_to_client().is_empty(), "held");
    r.core
        .force_close("57P01", "terminating connection", CloseReason::Shutdown);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("57P01"), "{out:?}");
}

/// A query the client sends while the replica's refusal of its previous read is being
/// dropped waits: the read goes to the primary first, then the query follows it. (It went
/// to the replica, ending the retry: the client got a ReadyForQuery for its read with
/// neither a result nor the error.)
#[test]
fn a_query_sent_during_a_refusal_waits_for_the_replay() {
    let mut r = routed();
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    r.server(&error(
        "25006",
        "cannot execute nextval() in a read-only transaction",
    ));
    r.client(&query("SELECT 2"));
    assert!(
        r.sent_to_server().is_empty(),
        "waits behind the refused read"
    );
    r.server(&ready(b'I'));
    assert!(
        r.sent_to_client().is_empty(),
        "nothing of the refused attempt"
    );
    r.expect_release();
    expect_checkout_on(&mut r, 0);
    assert_eq!(
        tags(&r.sent_to_server()),
        "QQ",
        "the read again, then the query"
    );
    let mut answers = select_answer();
    answers.extend(select_answer());
    r.server(&answers);
    assert_eq!(tags(&r.sent_to_client()), "TDCZTDCZ");
}

/// A writing transaction that called a function outside the allowlist (PL code that may
/// have run `SET`) has its settings read back after the writer's LSN is read, before the
/// server goes back (it was released at once, and the `SET` leaked to the next client).
#[test]
fn a_transaction_that_ran_pl_code_has_its_settings_read_back_after_the_write_lsn() {
    let mut r = routed();
    let allow = Arc::new(Allowlist::new(&[]));
    r.core.set_opaque_check(Classifier::new(allow));
    r.client(&query("SELECT f()"));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT f()"));
    r.server(&select_answer());
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(sent.contains("pg_current_wal_insert_lsn"), "{sent}");
    r.server(&probe_answer(2000));
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(
        sent.contains("pg_settings"),
        "no settings read-back: {sent:?}"
    );
    assert!(r.action().is_none(), "released before the read-back");
}
