//! Read-your-writes probes over recorded message sequences: the probe pipelined with the
//! read (hit, miss, probe error, server lost or silent mid-probe, input behind the unit,
//! extended units) and the probe sent alone for a unit that cannot be replayed.
//!
//! A probe sent ahead is Parse/Bind/Execute of `BEGIN`, the probe and `COMMIT` with no
//! Sync, so its answer ([`ahead_answer`]) has no ReadyForQuery of its own.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::super::Release;
use super::super::route::route_tests::{
    expect_checkout_on, extended_unit, probe_answer, route, routed, select_answer,
};
use super::super::tests::{Rig, complete, error, msg, query, ready, row, tags};
use crate::router::ToPrimary;
use crate::server::CloseReason;

fn n(k: &AtomicU64) -> u64 {
    k.load(Relaxed)
}

/// A session that wrote up to 2000, its read checked out on the replica (node 1, known
/// at 1000): returns what went to the server.
fn writer_reads(r: &mut Rig, unit: &[u8]) -> Vec<u8> {
    route(r).own_lsn = 2000;
    r.client(unit);
    expect_checkout_on(r, 1);
    r.sent_to_server()
}

fn probe_text(sent: &[u8]) -> String {
    String::from_utf8_lossy(sent).into_owned()
}

/// The probe (in a transaction of its own, no Sync) followed by `unit`, as one write.
fn assert_probe_then(sent: &[u8], unit: &[u8]) {
    assert!(sent.len() > unit.len(), "{}", probe_text(sent));
    let (probe, rest) = sent.split_at(sent.len() - unit.len());
    let text = probe_text(probe);
    assert!(
        text.contains("BEGIN")
            && text.contains("pg_last_wal_replay_lsn")
            && text.contains("0/7D0")
            && text.contains("COMMIT"),
        "{text}"
    );
    assert_eq!(tags(probe), "PBEPBEPBE", "BEGIN, the probe, COMMIT");
    assert_eq!(rest, unit, "the unit follows in the same write");
}

/// What a replica answers to a probe sent ahead, up to the unit's answer: the probe's
/// row (`lsn`) between `BEGIN`'s and `COMMIT`'s completions, no ReadyForQuery.
fn ahead_answer(lsn: u64) -> Vec<u8> {
    let mut a = msg(b'1', b"");
    a.extend(msg(b'2', b""));
    a.extend(complete("BEGIN"));
    a.extend(msg(b'1', b""));
    a.extend(msg(b'2', b""));
    a.extend(row(&crate::router::format_lsn(lsn)));
    a.extend(complete("SELECT 1"));
    a.extend(msg(b'1', b""));
    a.extend(msg(b'2', b""));
    a.extend(complete("COMMIT"));
    a
}

#[test]
fn the_probe_and_the_read_go_in_one_write_and_a_hit_answers_from_the_replica() {
    let mut r = routed();
    let sent = writer_reads(&mut r, &query("SELECT 1"));
    assert_probe_then(&sent, &query("SELECT 1"));
    // The probe's answer alone: pgsluice's, nothing for the client yet.
    r.server(&ahead_answer(2100));
    assert!(r.sent_to_client().is_empty());
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    // What the probe saw serves the next read without asking.
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let db = route(&mut r).db.clone();
    assert_eq!(n(&db.nodes[1].probes), 1);
    assert_eq!(n(&db.nodes[1].reads), 2);
    assert_eq!(n(&db.nodes[1].probe_misses), 0);
}

#[test]
fn both_answers_in_one_read_reach_the_client_as_the_reads_alone() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    let mut both = ahead_answer(2000);
    both.extend(select_answer());
    r.server(&both);
    assert_eq!(r.sent_to_client(), select_answer());
    assert_eq!(r.expect_release().1, Release::Clean);
}

#[test]
fn a_miss_drops_the_replicas_answer_and_sends_the_read_to_the_primary() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    let mut replica = ahead_answer(1500);
    replica.extend(select_answer());
    r.server(&replica);
    assert!(
        r.sent_to_client().is_empty(),
        "nothing of the replica's answer (it may not hold the write)"
    );
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean, "the replica goes back, idle");
    expect_checkout_on(&mut r, 0);
    assert_eq!(
        r.sent_to_server(),
        query("SELECT 1"),
        "the same read, alone"
    );
    let mut primary = msg(b'T', b"\0\0");
    primary.extend(row("2"));
    primary.extend(complete("SELECT 1"));
    primary.extend(ready(b'I'));
    r.server(&primary);
    assert_eq!(r.sent_to_client(), primary, "the primary's answer, once");
    assert_eq!(r.expect_release().1, Release::Clean);
    let db = route(&mut r).db.clone();
    assert_eq!(n(&db.nodes[1].probe_misses), 1);
    assert_eq!(n(&db.nodes[1].reads), 0);
    assert_eq!(
        n(&db.nodes[0].to_primary[ToPrimary::RywTimeout as usize]),
        1
    );
    assert_eq!(n(&db.nodes[1].retries), 0, "a miss is not a refusal");
}

#[test]
fn a_probe_error_is_a_miss() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    // The probe fails; the replica then skips the unit (no Sync follows it).
    let mut replica = msg(b'1', b"");
    replica.extend(msg(b'2', b""));
    replica.extend(complete("BEGIN"));
    replica.extend(msg(b'1', b""));
    replica.extend(msg(b'2', b""));
    replica.extend(error(
        "57014",
        "canceling statement due to statement timeout",
    ));
    r.server(&replica);
    assert!(r.sent_to_client().is_empty(), "not the probe's error");
    assert_eq!(
        r.expect_release().1,
        Release::Close(CloseReason::Broken),
        "the replica is in a failed transaction, skipping to a Sync"
    );
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
    let db = route(&mut r).db.clone();
    assert_eq!(n(&db.nodes[1].probe_misses), 1);
    assert_eq!(n(&db.nodes[1].retries), 0, "not a lost replica");
}

#[test]
fn a_probe_error_behind_an_extended_unit_is_a_miss_too() {
    let mut r = routed();
    let unit = extended_unit("");
    writer_reads(&mut r, &unit);
    let mut replica = msg(b'1', b"");
    replica.extend(msg(b'2', b""));
    replica.extend(complete("BEGIN"));
    replica.extend(error(
        "40001",
        "canceling statement due to conflict with recovery",
    ));
    // The unit's Sync ends the skip: the failed transaction block's status.
    replica.extend(ready(b'E'));
    r.server(&replica);
    assert!(r.sent_to_client().is_empty());
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), unit);
    r.server(&extended_answer());
    assert_eq!(tags(&r.sent_to_client()), "12TDCZ");
    assert_eq!(r.expect_release().1, Release::Clean);
}

#[test]
fn a_read_that_fails_behind_a_missed_probe_is_replayed_not_reported() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT nosuch"));
    let mut replica = ahead_answer(1500);
    replica.extend(error("42703", "column \"nosuch\" does not exist"));
    replica.extend(ready(b'I'));
    r.server(&replica);
    assert!(r.sent_to_client().is_empty());
    assert_eq!(
        r.expect_release().1,
        Release::Clean,
        "simple: no statement record"
    );
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT nosuch"));
}

#[test]
fn a_replica_lost_before_the_probe_answered_sends_the_read_elsewhere() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    r.core.server_lost("connection reset", r.now);
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::Broken));
    // The only replica is left out: the primary serves the read.
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    assert!(r.sent_to_client().is_empty(), "no error reached the client");
    let db = route(&mut r).db.clone();
    assert_eq!(n(&db.nodes[1].retries), 1, "counted as a lost read");
}

#[test]
fn a_replica_lost_mid_probe_answer_sends_the_read_elsewhere() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    let answer = ahead_answer(2100);
    r.server(&answer[..answer.len() - 3]);
    r.core.server_lost("connection reset", r.now);
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
}

#[test]
fn a_replica_lost_while_its_answer_is_dropped_still_sends_the_read_to_the_primary() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT 1"));
    let mut replica = ahead_answer(1500);
    replica.extend(msg(b'T', b"\0\0"));
    r.server(&replica);
    r.core.server_lost("connection reset", r.now);
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    assert!(r.sent_to_client().is_empty());
}

#[test]
fn a_probe_sent_ahead_has_no_deadline_of_its_own() {
    let mut r = routed();
    writer_reads(&mut r, &query("SELECT pg_sleep(60)"));
    // Its answer comes with the unit's: a long read is not cut short.
    assert_eq!(r.core.deadline(), None);
    r.core.tick(r.now + Duration::from_secs(600));
    assert!(r.action().is_none());
    let mut both = ahead_answer(2000);
    both.extend(select_answer());
    r.server(&both);
    assert_eq!(r.sent_to_client(), select_answer());
    assert_eq!(r.expect_release().1, Release::Clean);
}

#[test]
fn a_silent_replica_is_closed_and_the_read_goes_elsewhere() {
    let mut r = routed();
    let big = query(&format!("SELECT 1 /* {} */", "x".repeat(70_000)));
    writer_reads(&mut r, &big);
    let deadline = r
        .core
        .deadline()
        .expect("a probe sent alone has a deadline");
    r.core.tick(deadline + Duration::from_millis(1));
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), big);
    assert!(r.sent_to_client().is_empty());
}

#[test]
fn input_behind_the_unit_waits_for_the_probes_answer() {
    let mut r = routed();
    let mut two = query("SELECT 1");
    two.extend(query("SELECT 2"));
    let sent = writer_reads(&mut r, &two);
    assert_probe_then(&sent, &query("SELECT 1"));
    // On a miss, both go to the primary, in order.
    let mut replica = ahead_answer(1500);
    replica.extend(select_answer());
    r.server(&replica);
    assert!(r.sent_to_client().is_empty());
    r.expect_release();
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), two);
}

#[test]
fn input_behind_the_unit_follows_a_hit() {
    let mut r = routed();
    let mut two = query("SELECT 1");
    two.extend(query("SELECT 2"));
    writer_reads(&mut r, &two);
    r.server(&ahead_answer(2000));
    assert_eq!(r.sent_to_server(), query("SELECT 2"), "released by the hit");
    let mut answers = select_answer();
    answers.extend(select_answer());
    r.server(&answers);
    assert_eq!(r.sent_to_client(), answers);
    assert_eq!(r.expect_release().1, Release::Clean);
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

#[test]
fn an_extended_read_is_pipelined_too() {
    let mut r = routed();
    let unit = extended_unit("");
    let sent = writer_reads(&mut r, &unit);
    assert_probe_then(&sent, &unit);
    let mut both = ahead_answer(2000);
    both.extend(extended_answer());
    r.server(&both);
    assert_eq!(tags(&r.sent_to_client()), "12TDCZ");
    assert_eq!(r.expect_release().1, Release::Clean);
}

#[test]
fn an_extended_read_behind_a_miss_is_replayed_with_its_statement() {
    let mut r = routed();
    let unit = extended_unit("s1");
    let sent = writer_reads(&mut r, &unit);
    assert_eq!(
        tags(&sent),
        "PBEPBEPBEPBDES",
        "the probe, then the mapped unit"
    );
    let mut replica = ahead_answer(1500);
    replica.extend(extended_answer());
    r.server(&replica);
    assert!(r.sent_to_client().is_empty());
    let (_, how) = r.expect_release();
    assert_eq!(
        how,
        Release::Clean,
        "it ran without error: its record is true"
    );
    expect_checkout_on(&mut r, 0);
    assert_eq!(
        tags(&r.sent_to_server()),
        "PBDES",
        "prepared again on the primary"
    );
    r.server(&extended_answer());
    assert_eq!(
        tags(&r.sent_to_client()),
        "12TDCZ",
        "one ParseComplete, as if the replica had never been asked"
    );
}

#[test]
fn a_unit_that_cannot_be_replayed_waits_for_a_probe_sent_alone() {
    let mut r = routed();
    // Larger than a retry keeps.
    let big = query(&format!("SELECT 1 /* {} */", "x".repeat(70_000)));
    let sent = writer_reads(&mut r, &big);
    let text = probe_text(&sent);
    assert!(text.contains("pg_last_wal_replay_lsn"), "the probe");
    assert_eq!(tags(&sent), "Q", "and only the probe");
    r.server(&probe_answer(2100));
    assert_eq!(r.sent_to_server(), big, "the read follows the hit");
    r.server(&select_answer());
    assert_eq!(r.sent_to_client(), select_answer());
    assert_eq!(r.expect_release().1, Release::Clean);
}

#[test]
fn a_probe_sent_alone_that_misses_sends_the_read_to_the_primary() {
    let mut r = routed();
    let big = query(&format!("SELECT 1 /* {} */", "x".repeat(70_000)));
    writer_reads(&mut r, &big);
    r.server(&probe_answer(1500));
    assert_eq!(r.expect_release().1, Release::Clean);
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), big);
    let db = route(&mut r).db.clone();
    assert_eq!(
        n(&db.nodes[0].to_primary[ToPrimary::RywTimeout as usize]),
        1
    );
}

#[test]
fn a_probe_sent_alone_and_lost_sends_the_read_to_the_primary() {
    let mut r = routed();
    let big = query(&format!("SELECT 1 /* {} */", "x".repeat(70_000)));
    writer_reads(&mut r, &big);
    r.core.server_lost("connection reset", r.now);
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    expect_checkout_on(&mut r, 0);
    assert_eq!(r.sent_to_server(), big);
    assert!(r.sent_to_client().is_empty());
}

#[test]
fn no_probe_when_the_known_position_covers_the_write() {
    let mut r = routed();
    route(&mut r).own_lsn = 900;
    r.client(&query("SELECT 1"));
    expect_checkout_on(&mut r, 1);
    assert_eq!(r.sent_to_server(), query("SELECT 1"));
    let db = route(&mut r).db.clone();
    assert_eq!(n(&db.nodes[1].probes), 0);
}
