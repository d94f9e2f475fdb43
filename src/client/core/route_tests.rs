//! The session's routing over recorded message sequences: read-your-writes probes, and
//! replays of read units (simple and extended) that a replica refused or lost.

use std::sync::Arc;

use super::super::tests::{
    Rig, bind, complete, error, execute, msg, parse, query, ready, rig, row, sync, tags,
};
use super::super::{Action, Release, Route};
use crate::config::PoolMode;
use crate::router::route::Force;
use crate::router::{Allowlist, Classifier, ToPrimary, format_lsn};
use crate::server::{CloseReason, ServerState};

/// A transaction-mode session on a database whose replica (node 1) has replayed up to
/// 1000 and keeps up.
fn routed() -> Rig {
    let mut r = rig(PoolMode::Transaction, &[]);
    let db = crate::router::route::tests::db_with_ready_replica(1000);
    let allow = Arc::new(Allowlist::new(&[]));
    let route = Route::new(db, Classifier::new(allow), Force::Auto);
    r.core.route = Some(Box::new(route));
    r
}

fn route(r: &mut Rig) -> &mut Route {
    r.core.route.as_mut().expect("routed")
}

fn expect_checkout_on(r: &mut Rig, node: usize) {
    match r.action() {
        Some(Action::NeedServer { node: n }) if n == node => {}
        other => panic!("expected NeedServer on {node}, got {other:?}"),
    }
    r.attach(ServerState::new(node as u64 + 10));
}

fn probe_answer(lsn: u64) -> Vec<u8> {
    let mut a = msg(b'T', b"\0\0");
    a.extend(row(&format_lsn(lsn)));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

fn select_answer() -> Vec<u8> {
    let mut a = msg(b'T', b"\0\0");
    a.extend(row("1"));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

#[test]
fn a_writers_read_goes_to_a_replica_that_answers_the_probe_with_its_lsn() {
    let mut r = routed();
    route(&mut r).own_lsn = 2000;
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    let probe = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(
        probe.contains("pg_last_wal_replay_lsn") && probe.contains("'0/7D0'"),
        "{probe}"
    );
    assert!(
        r.sent_to_client().is_empty(),
        "the probe's answer is pgsluice's"
    );
    r.server(&probe_answer(2100));
    assert_eq!(r.sent_to_server(), query("SELECT 1"), "the read follows");
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    // What the probe saw serves the next read without asking.
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let db = route(&mut r).db.clone();
    assert_eq!(
        db.nodes[1]
            .probes
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn a_replica_behind_the_write_sends_the_read_to_the_primary() {
    let mut r = routed();
    route(&mut r).own_lsn = 2000;
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    r.server(&probe_answer(1500));
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean, "the replica goes back, idle");
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
    let db = route(&mut r).db.clone();
    let n = |k: &std::sync::atomic::AtomicU64| k.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n(&db.nodes[1].probe_misses), 1);
    assert_eq!(
        n(&db.nodes[0].to_primary[ToPrimary::RywTimeout as usize]),
        1
    );
}

#[test]
fn a_replica_lost_during_the_probe_sends_the_read_to_the_primary() {
    let mut r = routed();
    route(&mut r).own_lsn = 2000;
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    r.core.server_lost("connection reset", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    assert!(r.sent_to_client().is_empty(), "no error reached the client");
}

fn extended_unit(name: &str) -> Vec<u8> {
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

#[test]
fn an_answer_with_rows_is_never_replayed() {
    let mut r = routed();
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    r.sent_to_server();
    let mut answer = msg(b'T', b"\0\0");
    answer.extend(row("1"));
    r.server(&answer);
    assert_eq!(
        r.sent_to_client(),
        answer,
        "a row went out with what was held"
    );
    r.core.server_lost("connection reset", r.now);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("08006"), "{out}");
}
