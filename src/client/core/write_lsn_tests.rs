//! The write-LSN read sent behind a lone write, over recorded message sequences.

use super::super::probe_sql::{LSN_ID, lsn_read};
use super::super::route::route_tests::{expect_checkout_on, probe_answer, route, routed};
use super::super::tests::{complete, msg, query, ready, row, tags};
use super::super::{Action, Release};
use crate::server::CloseReason;

/// PostgreSQL's answer to the prepared write-LSN read: ParseComplete when the read
/// prepared its statement, BindComplete, the row, CommandComplete, ReadyForQuery.
fn lsn_answer(lsn: u64, parsed: bool) -> Vec<u8> {
    let mut a = if parsed { msg(b'1', b"") } else { Vec::new() };
    a.extend(msg(b'2', b""));
    a.extend(row(&crate::router::format_lsn(lsn)));
    a.extend(complete("SELECT 1"));
    a.extend(ready(b'I'));
    a
}

fn update_answer() -> Vec<u8> {
    let mut a = complete("UPDATE 1");
    a.extend(ready(b'I'));
    a
}

fn sent_text(r: &mut super::super::tests::Rig) -> String {
    String::from_utf8_lossy(&r.sent_to_server()).into_owned()
}

#[test]
fn a_lone_write_takes_the_write_lsn_read_in_the_same_write() {
    let mut r = routed();
    r.client(&query("UPDATE t SET a = 1;"));
    expect_checkout_on(&mut r, 0);
    let sent = r.sent_to_server();
    let mut want = query("UPDATE t SET a = 1;");
    want.extend(lsn_read(true));
    assert_eq!(sent, want, "the statement, then the read, in one write");
    r.server(&update_answer());
    assert_eq!(
        r.sent_to_client(),
        update_answer(),
        "the answer goes on at once"
    );
    assert!(
        r.action().is_none(),
        "the server stays for the read's answer"
    );
    r.server(&lsn_answer(2000, true));
    assert!(
        r.sent_to_client().is_empty(),
        "the read's answer is pgsluice's"
    );
    let (_, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert_eq!(route(&mut r).own_lsn, 2000);
    assert!(!route(&mut r).wrote);
}

#[test]
fn both_answers_in_one_read_are_taken_apart() {
    let mut r = routed();
    r.client(&query("INSERT INTO t VALUES (1)"));
    expect_checkout_on(&mut r, 0);
    r.sent_to_server();
    let mut both = update_answer();
    both.extend(lsn_answer(3000, true));
    r.server(&both);
    assert_eq!(r.sent_to_client(), update_answer());
    assert_eq!(r.expect_release().1, Release::Clean);
    assert_eq!(route(&mut r).own_lsn, 3000);
}

#[test]
fn what_the_client_pipelined_behind_is_answered_after_the_read() {
    let mut r = routed();
    let mut two = query("DELETE FROM t");
    two.extend(query("INSERT INTO t VALUES (2)"));
    r.client(&two);
    expect_checkout_on(&mut r, 0);
    // The second write is not alone: something is in flight when it goes.
    assert_eq!(tags(&r.sent_to_server()), "QPBESQ");
    let mut answers = update_answer();
    answers.extend(lsn_answer(4000, true));
    answers.extend(update_answer());
    r.server(&answers);
    let mut want = update_answer();
    want.extend(update_answer());
    assert_eq!(r.sent_to_client(), want, "both answers, none of the read's");
    assert!(r.action().is_none(), "the LSN covering both is read first");
    assert_eq!(
        route(&mut r).own_lsn,
        0,
        "the first LSN covers one write of two"
    );
    assert_eq!(
        r.sent_to_server(),
        lsn_read(false),
        "the read again, prepared by the first"
    );
    r.server(&lsn_answer(5000, false));
    assert_eq!(r.expect_release().1, Release::Clean);
    assert_eq!(route(&mut r).own_lsn, 5000);
}

#[test]
fn a_text_that_may_open_a_transaction_reads_after_its_answer() {
    for sql in [
        "UPDATE t SET a = 1; BEGIN",
        "UPDATE t SET a = ';'",
        "/* c */ UPDATE t SET a = 1",
        "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
        "COPY t FROM STDIN",
    ] {
        let mut r = routed();
        r.client(&query(sql));
        expect_checkout_on(&mut r, 0);
        assert_eq!(r.sent_to_server(), query(sql), "{sql}: the statement alone");
    }
}

#[test]
fn a_write_inside_a_transaction_block_reads_after_the_commit() {
    let mut r = routed();
    r.client(&query("BEGIN"));
    expect_checkout_on(&mut r, 0);
    r.sent_to_server();
    let mut begun = complete("BEGIN");
    begun.extend(ready(b'T'));
    r.server(&begun);
    r.sent_to_client();
    r.client(&query("UPDATE t SET a = 1"));
    assert_eq!(r.sent_to_server(), query("UPDATE t SET a = 1"));
    let mut updated = complete("UPDATE 1");
    updated.extend(ready(b'T'));
    r.server(&updated);
    r.client(&query("COMMIT"));
    assert_eq!(r.sent_to_server(), query("COMMIT"));
    let mut committed = complete("COMMIT");
    committed.extend(ready(b'I'));
    r.server(&committed);
    assert!(sent_text(&mut r).contains("pg_current_wal_insert_lsn"));
    r.server(&lsn_answer(6000, true));
    assert_eq!(r.expect_release().1, Release::Clean);
    assert_eq!(route(&mut r).own_lsn, 6000);
}

#[test]
fn a_server_lost_before_the_reads_answer_keeps_the_session() {
    let mut r = routed();
    r.client(&query("UPDATE t SET a = 1"));
    expect_checkout_on(&mut r, 0);
    r.sent_to_server();
    r.server(&update_answer());
    assert_eq!(r.sent_to_client(), update_answer());
    r.core.server_lost("connection reset", r.now);
    assert_eq!(r.expect_release().1, Release::Close(CloseReason::Broken));
    assert!(
        r.sent_to_client().is_empty(),
        "the client was answered: no error"
    );
    assert_eq!(route(&mut r).own_lsn, u64::MAX, "reads stay on the primary");
    assert!(!matches!(r.action(), Some(Action::Close { .. })));
}

#[test]
fn a_server_lost_with_more_in_flight_behind_the_read_ends_the_session() {
    let mut r = routed();
    let mut two = query("UPDATE t SET a = 1");
    two.extend(query("SELECT 1"));
    r.client(&two);
    expect_checkout_on(&mut r, 0);
    r.sent_to_server();
    r.server(&update_answer());
    r.core.server_lost("connection reset", r.now);
    let out = String::from_utf8_lossy(&r.sent_to_client()).into_owned();
    assert!(out.contains("08006"), "{out}");
}

/// The read is prepared by the first write on a connection and only bound after that;
/// a connection whose record of prepared statements is full gets the Query.
#[test]
fn the_write_lsn_read_is_prepared_once_per_connection() {
    let mut r = routed();
    let mut state = None;
    for (round, want_prepare) in [(0, true), (1, false), (2, false)] {
        r.client(&query("UPDATE t SET a = 1"));
        match r.action() {
            Some(super::super::Action::NeedServer { node: 0 }) => {}
            other => panic!("round {round}: expected NeedServer, got {other:?}"),
        }
        r.attach(
            state
                .take()
                .unwrap_or_else(|| crate::server::ServerState::new(10)),
        );
        let mut want = query("UPDATE t SET a = 1");
        want.extend(lsn_read(want_prepare));
        assert_eq!(r.sent_to_server(), want, "round {round}");
        let mut answers = update_answer();
        answers.extend(lsn_answer(5000 + round, want_prepare));
        r.server(&answers);
        let (back, how) = r.expect_release();
        assert_eq!(how, Release::Clean);
        assert!(back.statements.contains(LSN_ID), "round {round}: recorded");
        assert_eq!(route(&mut r).own_lsn, 5000 + round);
        state = Some(back);
    }
    // A full record keeps the client's statements: the Query, and nothing recorded.
    let mut full = crate::server::ServerState::new(11);
    for id in 1..=r.core.map.max_prepared() as u64 {
        full.statements.insert(id);
    }
    r.client(&query("UPDATE t SET a = 2"));
    match r.action() {
        Some(super::super::Action::NeedServer { node: 0 }) => {}
        other => panic!("expected NeedServer, got {other:?}"),
    }
    r.attach(full);
    let mut want = query("UPDATE t SET a = 2");
    want.extend(query("SELECT pg_catalog.pg_current_wal_insert_lsn()"));
    assert_eq!(r.sent_to_server(), want);
    let mut answers = update_answer();
    answers.extend(probe_answer(6000));
    r.server(&answers);
    let (back, _) = r.expect_release();
    assert!(!back.statements.contains(LSN_ID));
}
