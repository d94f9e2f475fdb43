//! Failures the session core's fuzz targets found where prepared statements are dropped
//! (DISCARD ALL, DEALLOCATE, a client's names next to pgsluice's), as recorded message
//! sequences: each test names the minimal input, what went wrong and how it is fixed.
//! (Other statement-record faults: `fuzz_record_regressions.rs`.)

use super::fuzz_harness::{Attach, Event, Routing, Session};
use super::fuzz_inputs::{Ext, Step, encode};
use super::fuzz_regressions::{one_per_server, replay};
use super::tests::{complete, error, msg, parse, query, ready, rig, sync, tags};
use super::{Action, Release};
use crate::config::PoolMode;
use crate::server::{CloseReason, ServerState};

/// Found by `fuzz_session_core` (minimal input: transaction mode with mapping, one batch
/// `Parse s1 "SELECT 1"`, `Parse "" "DISCARD ALL"`, `Sync`). The session-state policy
/// read a Parse's text as if it ran (`inspect_text` for `fe::PARSE` in `whole_frame`),
/// so a DISCARD ALL that is only parsed made the mapping forget every statement
/// (`forget_all`) while the server kept `sluice_1`. The next client given this server
/// and needing statement 1 sent `Parse sluice_1` and got 42P05 "already exists".
/// Fixed: a Parse forgets nothing (whether and when it runs is the client's Bind and
/// Execute's affair); since the record may then be wrong, the server is closed when the
/// unit ends instead of being handed to the next client (a DISCARD ALL Query is exact:
/// see `a_discard_all_query_is_forgotten_only_when_it_ran`).
#[test]
fn a_parsed_but_unexecuted_discard_all_keeps_the_statement_record() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batch = parse("s1", "SELECT 1");
    batch.extend(parse("", "DISCARD ALL"));
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    let sent = r.sent_to_server();
    assert!(String::from_utf8_lossy(&sent).contains("sluice_1\0SELECT 1"));
    let mut answer = msg(b'1', b"");
    answer.extend(msg(b'1', b""));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "11Z");
    let (state, how) = r.expect_release();
    assert!(
        state.statements.contains(1),
        "the server still holds sluice_1 (DISCARD ALL was never executed)"
    );
    assert_eq!(
        how,
        Release::Close(CloseReason::ResetFailed),
        "a record a parsed DISCARD ALL may have made wrong is not handed on"
    );
}

/// `a_failed_reprepare_before_a_query_does_not_hang` as a recorded sequence: when
/// pgsluice prepares a statement again ahead of the client's `DEALLOCATE` Query (the
/// server lacks it) and that Parse fails, the server skips only to pgsluice's own Sync:
/// the Query still runs and is answered.
#[test]
fn a_failed_reprepare_before_deallocate_is_synced_on_its_own() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batch = parse("s1", "SELECT * FROM t");
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1Z");
    r.expect_release();
    // Another server, which lacks the statement (and the table is gone by now).
    r.client(&query("DEALLOCATE s1"));
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected a server asked for, got {other:?}"),
    }
    r.attach(ServerState::new(2));
    let mut expected = parse("sluice_1", "SELECT * FROM t");
    expected.extend(sync());
    expected.extend(query("DEALLOCATE sluice_1"));
    assert_eq!(
        String::from_utf8_lossy(&r.sent_to_server()),
        String::from_utf8_lossy(&expected)
    );
    let mut answer = error("42P01", "relation \"t\" does not exist");
    answer.extend(ready(b'I'));
    answer.extend(error(
        "26000",
        "prepared statement \"sluice_1\" does not exist",
    ));
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(
        tags(&r.sent_to_client()),
        "EZ",
        "the client's Query is answered"
    );
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(!state.statements.contains(1));
}

/// A `DISCARD ALL` Query drops the server's statements only when the server says it ran
/// (inside a transaction block it fails); the Query pipelined behind it waits for that
/// answer, so nothing sent after it is forgotten with it.
#[test]
fn a_discard_all_query_is_forgotten_only_when_it_ran() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batch = parse("s1", "SELECT 1");
    batch.extend(sync());
    batch.extend(query("BEGIN"));
    r.client(&batch);
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    answer.extend(complete("BEGIN"));
    answer.extend(ready(b'T'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1ZCZ");
    // Inside the transaction: DISCARD ALL fails; the record keeps sluice_1.
    let mut two = query("DISCARD ALL");
    two.extend(query("ROLLBACK"));
    r.client(&two);
    assert_eq!(r.sent_to_server(), query("DISCARD ALL"), "ROLLBACK waits");
    let mut answer = error("25001", "DISCARD ALL cannot run inside a transaction block");
    answer.extend(ready(b'E'));
    r.server(&answer);
    assert_eq!(r.sent_to_server(), query("ROLLBACK"));
    let mut answer = complete("ROLLBACK");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.statements.contains(1), "DISCARD ALL did not run");
    // Outside one it runs: the statements go, and the Query behind it waits for that.
    let mut two = query("DISCARD ALL");
    two.extend(query("SELECT 1"));
    r.client(&two);
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected a server asked for, got {other:?}"),
    }
    r.attach(state);
    r.sent_to_client();
    assert_eq!(r.sent_to_server(), query("DISCARD ALL"), "SELECT 1 waits");
    let mut answer = complete("DISCARD ALL");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(!state.statements.contains(1), "DISCARD ALL ran");
    assert!(r.core.map.names.stmts.is_empty());
}

/// Found by `fuzz_session_garbage` once its statement-record check failed the target
/// (minimal input: one statement per server; a malformed Close that leaves a batch
/// open, then `DEALLOCATE ALL` as a Query, then `Parse s1 "SELECT 1"`, `Sync`). Only
/// the start of a unit waited for the DEALLOCATE ALL's answer, and inside the open
/// batch the Parse was no unit's start: it went out first, and the DEALLOCATE ALL's
/// CommandComplete then wiped it from the record. Fixed: every client message after it
/// waits (but COPY data, which its answer may need).
#[test]
fn a_parse_after_deallocate_all_in_an_open_batch_waits() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut input = msg(b'C', b"\0");
    input.extend(query("DEALLOCATE ALL"));
    input.extend(parse("s1", "SELECT 1"));
    input.extend(sync());
    r.client(&input);
    r.expect_checkout();
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(!sent.contains("sluice_1"), "the Parse waits: {sent:?}");
    let mut answer = msg(b'3', b"");
    answer.extend(complete("DEALLOCATE ALL"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(sent.contains("sluice_1\0SELECT 1"), "{sent:?}");
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.statements.contains(1));
}

/// Found by `fuzz_session_core` (minimal input: two statements per server;
/// `Parse sluice_1 "DISCARD ALL"`, `Sync`, then `Bind "" sluice_1`, `Execute`, `Sync`).
/// The Parse marks the first server's record unsure, and it is closed; the Bind on the
/// next server re-prepares the statement there (hidden) and its Execute drops every
/// statement, but nothing marked that server's record unsure: it was released with
/// sluice_1 recorded and gone. Fixed: the record is marked unsure whenever pgsluice
/// itself prepares a statement whose text drops every statement
/// (`Mapping::note_dropping_text`), not only at the client's Parse.
#[test]
fn a_reprepared_discard_all_statement_marks_the_record_unsure() {
    let steps = [
        Step::Batch(vec![Ext::Parse("sluice_1", "DISCARD ALL".into())]),
        Step::Batch(vec![Ext::Bind("", "sluice_1"), Ext::Execute("")]),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(one_per_server(2, None, 0, 0), bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` (minimal input below: one statement per server,
/// startup `application_name=fuzz`, the model failing statements at random; settings
/// replays, a client statement named `sluice_1`, and a `DEALLOCATE sluice_1`). The
/// client's name is not the fault (every client name is mapped: the client's `sluice_1`
/// is the server's `sluice_1` only because it is statement 1): the rewritten
/// `DEALLOCATE` failed on the server (here an injected error; on PostgreSQL, say, in an
/// aborted transaction), yet `Mapping::deallocate` had already struck the statement from
/// the server's record, which ended without sluice_1 while the server held it. Fixed:
/// the record forgets it when the `DEALLOCATE` succeeded (`Act::Deallocate`); if it
/// failed, the client's name is back too, as on PostgreSQL.
#[test]
fn a_client_statement_named_like_ours_keeps_the_record() {
    let routing = Routing {
        ryw: false,
        report_lsn: false,
        retry: false,
        never_primary: false,
    };
    let mut setup = one_per_server(1, Some(routing), 64, 2477151362102093522);
    setup.startup = vec![("application_name".into(), "fuzz".into())];
    let steps = [
        Step::Query("RESET work_mem".into()),
        Step::Query("SET work_mem = '8MB'".into()),
        Step::Batch(vec![Ext::Parse("sluice_1", "SELECT 1".into())]),
        Step::Query("SET work_mem = '8MB'".into()),
        Step::Query("SET work_mem = '8MB'".into()),
        Step::Query("DEALLOCATE sluice_1".into()),
    ];
    replay(setup, &steps, &[]);
}

/// The fault behind `a_client_statement_named_like_ours_keeps_the_record`, step by step:
/// a `DEALLOCATE` the server refuses leaves the statement in the server's record and the
/// client's name mapped; one it runs takes both away.
#[test]
fn a_deallocate_is_struck_from_the_record_only_when_it_ran() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batch = parse("s1", "SELECT 1");
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (mut state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(state.statements.contains(1));
    for (answer, ran) in [
        (error("25P02", "refused"), false),
        (complete("DEALLOCATE"), true),
    ] {
        r.client(&query("DEALLOCATE s1"));
        match r.action() {
            Some(Action::NeedServer { node: 0 }) => {}
            other => panic!("expected NeedServer, got {other:?}"),
        }
        r.attach(state);
        assert_eq!(r.sent_to_server(), query("DEALLOCATE sluice_1"));
        let mut answer = answer;
        answer.extend(ready(b'I'));
        r.server(&answer);
        let how;
        (state, how) = r.expect_release();
        assert_eq!(how, Release::Clean);
        assert_eq!(state.statements.contains(1), !ran, "ran: {ran}");
        assert_eq!(
            r.core.map.names.stmts.contains_key("s1"),
            !ran,
            "ran: {ran}"
        );
    }
}

/// The client's and pgsluice's statement names share the server's one namespace, and a
/// text pgsluice does not map reaches it as written (here a `DEALLOCATE` among two
/// statements, dropping pgsluice's `sluice_1`): the record of that server's statements
/// may be wrong, so it is closed rather than handed to the next client. A lone
/// `DEALLOCATE sluice_1` of a name the client never prepared is renamed instead.
#[test]
fn a_text_naming_our_statements_is_not_handed_on() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batch = parse("s1", "SELECT 1");
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    r.sent_to_server();
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, _) = r.expect_release();
    r.client(&query("SELECT 1; DEALLOCATE sluice_1"));
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected NeedServer, got {other:?}"),
    }
    r.attach(state);
    assert_eq!(r.sent_to_server(), query("SELECT 1; DEALLOCATE sluice_1"));
    let mut answer = complete("SELECT 1");
    answer.extend(complete("DEALLOCATE"));
    answer.extend(ready(b'I'));
    r.server(&answer);
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Close(CloseReason::ResetFailed));
    // A lone DEALLOCATE of a name the client never prepared cannot reach ours.
    r.client(&query("DEALLOCATE SLUICE_2"));
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected NeedServer, got {other:?}"),
    }
    r.attach(ServerState::new(state.id + 1));
    assert_eq!(r.sent_to_server(), query("DEALLOCATE \"unknown_sluice_2\""));
    r.server(&[error("26000", "no such statement"), ready(b'I')].concat());
    assert_eq!(r.expect_release().1, Release::Clean);
}

/// Found by `fuzz_session_core` (minimal input: `Parse s1 "SELECT 1"`, `Bind c1`, `Sync`,
/// then the Query `DEALLOCATE\nALL SELECT `). A fault of the model server, not of the
/// core: it took any `DEALLOCATE` with an `ALL` word for `DEALLOCATE ALL`, where
/// PostgreSQL (and the core's effect scanner) see a syntax error and drop nothing. Fixed
/// in the model; this keeps the core's side: the record keeps `s1`'s statement.
#[test]
fn a_deallocate_all_followed_by_more_words_drops_nothing() {
    let steps = [
        Step::Batch(vec![
            Ext::Parse("s1", "SELECT 1".into()),
            Ext::Bind("c1", ""),
        ]),
        Step::Query("DEALLOCATE\nALL SELECT ".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(one_per_server(1, None, 0, 0), bytes, vec![Attach::Reuse]);
    s.event(Event::Client(1));
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_core` (minimal input below: one statement per server, the
/// model failing statements at random; `PREPARE p2 AS INSERT ...`, a batch of
/// `Parse s2 ""` and `Parse "" "DEALLOCATE ALL"`, `EXECUTE p2`, a batch binding `s1` and
/// `s2`). On the
/// second server the hidden `PREPARE` for `EXECUTE p2` failed (injected), but the batch
/// behind it did not wait for that answer: to prepare `s2` it evicted statement 1
/// (recorded, not yet taken back), and when the batch's first Bind failed, undoing the
/// skipped eviction put statement 1 back in the record, which the server never had.
/// Fixed: pgsluice's own hidden `PREPARE` counts as an answer that may take a statement
/// back (`Replies::unsettled`), so what would change the record waits for it.
#[test]
fn a_parsed_deallocate_all_among_failures_keeps_the_record() {
    let steps = [
        Step::Query("PREPARE p2 AS INSERT INTO t VALUES (1)".into()),
        Step::Batch(vec![
            Ext::Parse("s2", "".into()),
            Ext::Parse("", "DEALLOCATE ALL".into()),
        ]),
        Step::Query("EXECUTE p2".into()),
        Step::Batch(vec![Ext::Bind("", "s1"), Ext::Bind("", "s2")]),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let setup = one_per_server(1, None, 64, 10549450432461854494);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_core` on main after the core11 merge (minimal input: statement
/// mode with mapping, one statement per server; `SET default_transaction_read_only = on`,
/// then batches `Parse s2 "SELECT 1"`, `Parse "" "DEALLOCATE ALL"`, `Sync`; `Parse s1
/// "SELECT $1"`, `Sync`; `Bind c1 ""`, `Execute c1`, `Sync`). The unnamed DEALLOCATE ALL
/// is kept for a later unit; the second batch puts `sluice_2` on a new server; the third
/// binds the unnamed statement there, so pgsluice re-sends it, hidden, and the Execute
/// drops `sluice_2` on that server, which went back clean with a record still holding
/// it. Fixed: a re-sent unnamed statement's text counts as the client's own Parse of it
/// (`Mapping::note_resent_parse`): one that drops or names statements makes the record
/// unsure, and the server is closed.
#[test]
fn a_resent_unnamed_deallocate_all_leaves_no_wrong_record() {
    let mut setup = one_per_server(1, None, 0, 0);
    setup.limits.mode = PoolMode::Statement;
    let steps = [
        Step::Query("SET default_transaction_read_only = on".into()),
        Step::Batch(vec![
            Ext::Parse("s2", "SELECT 1".into()),
            Ext::Parse("", "DEALLOCATE ALL".into()),
        ]),
        Step::Batch(vec![Ext::Parse("s1", "SELECT $1".into())]),
        Step::Batch(vec![Ext::Bind("c1", ""), Ext::Execute("c1")]),
    ];
    replay(setup, &steps, &[]);
}
