//! Failures the session core's fuzz targets found, as recorded message sequences: each
//! test names the minimal input, what went wrong and how it is fixed.

use std::time::Duration;

use super::Limits;
use super::fuzz_harness::{Attach, Event, Routing, Session, Setup, route};
use super::fuzz_tests::{Ext, Step, encode};
use super::tests::{bind, complete, error, msg, parse, query, ready, rig, sync, tags};
use super::{Action, AttachError, Release};
use crate::config::PoolMode;
use crate::server::{CloseReason, ServerState};

/// Found by `fuzz_session_routed` (minimal input: startup `application_name=fuzz`,
/// transaction mode, the client sends `SET work_mem = '8MB'` and `SELECT 1` in one
/// read; the server takes the settings replay but does not answer it within
/// CHORE_TIMEOUT). `chore_failed` answered the first unit with an error (refuse_unit)
/// but, unlike `attach_failed`, did not `step` afterwards: the second Query stayed in
/// the client buffer, and since the driver only steps the core when bytes arrive, a
/// client that pipelined its statements waited for ever. Fixed: a failed chore steps
/// the core whatever it was, as every other path that answers a unit itself does.
#[test]
fn pipelined_input_after_a_replay_timeout_is_handled() {
    let mut r = rig(PoolMode::Transaction, &[("application_name", "fuzz")]);
    let mut both = query("SELECT 1");
    both.extend(query("SELECT 2"));
    r.client(&both);
    r.expect_checkout();
    // The replay of the startup setting goes first; the server never answers it.
    let sent = r.sent_to_server();
    assert!(String::from_utf8_lossy(&sent).contains("set_config('application_name'"));
    r.now += super::CHORE_TIMEOUT * 2;
    assert!(r.core.deadline().is_some_and(|d| d <= r.now));
    r.core.tick(r.now);
    assert_eq!(tags(&r.sent_to_client()), "EZ", "the first unit fails");
    match r.action() {
        Some(Action::Release(_, Release::Close(CloseReason::Broken))) => {}
        other => panic!("expected the silent server closed, got {other:?}"),
    }
    // The second Query is pipelined behind it: the core must go on with it.
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("SELECT 2 is left unread (no server asked for): {other:?}"),
    }
    r.attach(ServerState::new(2));
    assert!(String::from_utf8_lossy(&r.sent_to_server()).contains("application_name"));
}

/// Found by `fuzz_session_core` (minimal input: transaction mode with mapping, the
/// queries `ROLLBACK`, `EXECUTE p2`, `BEGIN READ ONLY`, `ABORT` arriving in reads of 14,
/// 1 and 20 bytes). In `scan_client`, a Query (or Parse) not yet whole behind frames
/// forwarded in the same pass sets `flow.c_need = fwd + frame_len`; the pass then moves
/// the `fwd` forwarded bytes out of the buffer (`flush_client_bytes`) without lowering
/// `c_need`. The core then waits for `fwd` bytes more than the frame needs: once the
/// rest of the Query arrives, `step` still did not look at it, and a client waiting for
/// its answers waited for ever. Fixed: `c_need` is the frame's length (it is at the head
/// once the forwarded bytes have left).
#[test]
fn a_query_split_after_a_forwarded_frame_is_read_when_whole() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("BEGIN"));
    r.expect_checkout();
    assert_eq!(r.sent_to_server(), query("BEGIN"));
    let mut answer = complete("BEGIN");
    answer.extend(ready(b'T'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    // One read: a whole Query, then the header and first bytes of the next.
    let first = query("SELECT 1");
    let second = query("SELECT 2");
    let mut read = first.clone();
    read.extend_from_slice(&second[..7]);
    r.client(&read);
    assert_eq!(r.sent_to_server(), first);
    // The rest of the second Query arrives: it must go to the server.
    r.client(&second[7..]);
    assert_eq!(
        r.sent_to_server(),
        second,
        "the whole second Query sits unread (c_need {} for {} bytes)",
        r.core.flow.c_need,
        r.core.cin.len()
    );
}

/// Found by `fuzz_session_garbage` (minimal input: `Sync`, then a Terminate declaring an
/// 8-byte body, `X 00 00 00 0c` + 8 bytes, arriving 10 bytes at a time, with a server
/// held). Terminate is not a frame the core waits to have whole, yet with a server held
/// `scan_client` dropped it with `cin.split_to(h.frame_len)` while only part of it was in
/// the buffer: `split_to out of bounds`, a panic on a client's bytes. Fixed: nothing
/// after a Terminate is read, so the whole input is dropped.
#[test]
fn a_terminate_with_a_body_cut_short_is_no_panic() {
    let mut r = rig(PoolMode::Session, &[]);
    r.client(&query("SELECT 1"));
    r.expect_checkout();
    r.sent_to_server();
    let mut terminate = msg(b'X', &[0; 8]);
    terminate.truncate(10);
    r.client(&terminate);
}

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

/// Found by `fuzz_session_core` (minimal input: statement mode with mapping, the client
/// pipelines `Bind "" ""`, `Parse s1 "SELECT 1"`, `Sync`, `Parse s1 "SELECT 1"`, `Sync`).
/// The first batch fails at its Bind, so the server skips its Parse; the second batch's
/// Parse of the same `sluice_1` succeeds. When the first batch's error comes back, the
/// mapping forgot `sluice_1` although the Parse sent after that Sync prepared it: the
/// record said the server lacks a statement it holds, and the next Parse of it on this
/// server failed with 42P05. Fixed: a statement the mapping would rewrite waits while
/// the answers to an earlier unit may still take back what is recorded for it
/// (`Replies::unsettled`); the second Parse then goes out as a first definition.
#[test]
fn a_parse_pipelined_behind_a_failed_batch_stays_recorded() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let mut batches = bind("");
    batches.extend(parse("s1", "SELECT 1"));
    batches.extend(sync());
    batches.extend(parse("s1", "SELECT 1"));
    batches.extend(sync());
    r.client(&batches);
    r.expect_checkout();
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert_eq!(
        sent.matches("sluice_1\0SELECT 1").count(),
        1,
        "the second Parse waits for the first batch's answers: {sent:?}"
    );
    // The Bind fails and its batch is skipped to Sync: s1 was never defined.
    let mut answer = error("26000", "unnamed prepared statement does not exist");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "EZ");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(!state.statements.contains(1));
    // The second Parse is now a first definition, and it succeeds.
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected a server asked for, got {other:?}"),
    }
    r.attach(state);
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert_eq!(sent.matches("sluice_1\0SELECT 1").count(), 1, "{sent:?}");
    let mut answer = msg(b'1', b"");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "1Z");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(
        state.statements.contains(1),
        "the server holds sluice_1 from the second batch"
    );
}

/// Found by `fuzz_session_routed` (minimal input: routing with `primary_reads = never`,
/// the replica unreachable, the client pipelining `COMMIT`, `COMMIT`, `SELECT 1`). When
/// no node can serve a unit, `ask_for_server` answers it with an error (`refuse_unit`)
/// and returned true, so `scan_client` stopped (`Stop::Yield`) with the next unit unread:
/// only new client bytes would have made the core look at it again. Fixed: a refused
/// unit is answered and the scan goes on.
#[test]
fn units_pipelined_behind_a_refused_unit_are_answered() {
    let mut r = rig(PoolMode::Transaction, &[]);
    let policy = Routing {
        ryw: false,
        report_lsn: false,
        retry: false,
        never_primary: true,
    };
    r.core.route = Some(Box::new(route(&policy)));
    let mut three = query("SELECT 1");
    three.extend(query("SELECT 2"));
    three.extend(query("SELECT 3"));
    r.client(&three);
    match r.action() {
        Some(Action::NeedServer { node: 1 }) => {}
        other => panic!("expected a replica asked for, got {other:?}"),
    }
    let down = AttachError::Unreachable("08006".into(), "replica down".into());
    r.core.attach_failed(1, down, r.now);
    assert_eq!(
        tags(&r.sent_to_client()),
        "EZEZEZ",
        "each of the three reads is refused (no replica, primary_reads = never)"
    );
}

/// Found by `fuzz_session_routed` (the minimal input below, replayed through the
/// harness with stalls failing): the second `PREPARE "P3"` is answered by pgsluice
/// (42P05) with the server then released (`sql_prepared`, `SqlStep::Answer`, which
/// returned `Stop::Yield`), and `SELECT 1`, pipelined behind it, was never looked at.
/// Fixed: the scan goes on after the answer (the next unit asks for a server again).
/// The same as a recorded sequence: `an_answered_prepare_releases_and_the_next_query_runs`.
#[test]
fn a_query_pipelined_behind_an_answered_prepare_is_run() {
    let setup = Setup {
        limits: Limits {
            mode: PoolMode::Transaction,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: String::new(),
            rewrite: true,
            timeouts: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared: 1,
        routing: Some(Routing {
            ryw: false,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        error_rate: 0,
        seed: 0,
    };
    let steps = [
        "PREPARE p1(int) AS SELECT $1",
        "PREPARE \"P3\" AS SELECT 3",
        "PREPARE \"P3\" AS SELECT 3",
        "SELECT 1",
    ]
    .map(|q| Step::Query(q.to_string()));
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse, Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by the long run of `fuzz_session_core` (the minimal input below; also by
/// `fuzz_session_routed` with client names `sluice_1`/`s1`). With one statement per
/// server, the batch `Parse s1; Bind "" ""; Parse s2; Sync` fails at its Bind, so the
/// server skips the `Close sluice_1` pgsluice put in to make room (and the Parse of
/// `sluice_2`), yet the mapping records sluice_1 closed. For `DEALLOCATE s1` pgsluice
/// then re-prepares s1 with its own `Parse sluice_1` ahead of the Query, and no Sync:
/// the server answers 42P05 (it still holds sluice_1) and, in extended-protocol error
/// state, discards everything up to a Sync, the Query included. No ReadyForQuery ever
/// came; the client had an ErrorResponse naming `sluice_1` and waited for ever. (When a
/// Sync of the client's followed, the skip ended there, but the Query stayed unanswered:
/// one ReadyForQuery short, `fuzz_session_routed`'s variant.) Fixed twice over: the
/// DEALLOCATE waits until the failed batch's answers settle the record (sluice_1 is then
/// known to be there, and no re-prepare is needed), and a re-prepare before a Query has
/// a Sync of its own (`a_failed_reprepare_before_deallocate_is_synced_on_its_own`).
#[test]
fn a_failed_reprepare_before_a_query_does_not_hang() {
    let setup = Setup {
        limits: Limits {
            mode: PoolMode::Transaction,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: String::new(),
            rewrite: true,
            timeouts: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared: 1,
        routing: None,
        error_rate: 0,
        seed: 0,
    };
    let steps = [
        Step::Batch(vec![
            Ext::Parse("s1", "SELECT 1".into()),
            Ext::Bind("", ""),
            Ext::Parse("s2", "SELECT $1".into()),
        ]),
        Step::Query("DEALLOCATE s1".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// `a_query_pipelined_behind_an_answered_prepare_is_run` as a recorded sequence: a
/// `PREPARE` of a name the client already has is answered by pgsluice (42P05) and the
/// idle server goes back; the Query pipelined behind it asks for a server again.
#[test]
fn an_answered_prepare_releases_and_the_next_query_runs() {
    let mut r = rig(PoolMode::Transaction, &[]);
    r.client(&query("PREPARE p AS SELECT 1"));
    r.expect_checkout();
    let sent = r.sent_to_server();
    assert!(String::from_utf8_lossy(&sent).contains("PREPARE sluice_1 AS SELECT 1"));
    let mut answer = complete("PREPARE");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "CZ");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    let mut two = query("PREPARE p AS SELECT 1");
    two.extend(query("SELECT 2"));
    r.client(&two);
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("expected a server asked for, got {other:?}"),
    }
    r.attach(state);
    assert_eq!(tags(&r.sent_to_client()), "EZ", "42P05, answered here");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    match r.action() {
        Some(Action::NeedServer { node: 0 }) => {}
        other => panic!("SELECT 2 is left unread: {other:?}"),
    }
    r.attach(state);
    assert_eq!(r.sent_to_server(), query("SELECT 2"));
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

/// Found by `fuzz_session_routed` once its statement-record check failed the target
/// (minimal input: statement mode with mapping, one statement per server, no reset
/// query; `Parse s1 "PREPARE q AS SELECT 1"` (which pins), `Sync`, `SELECT 1`, `BEGIN`).
/// Statement mode ends the session at the BEGIN; the cleanup runs `ROLLBACK` but not
/// the (empty) reset query, yet was told the reset ran, and cleared the server's
/// settings and statement record: the next client of the server would send
/// `Parse sluice_1` and get 42P05. Fixed: the cleanup clears them only when the reset
/// query is among its statements.
#[test]
fn a_cleanup_without_a_reset_query_keeps_the_statement_record() {
    let setup = Setup {
        limits: Limits {
            mode: PoolMode::Statement,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: String::new(),
            rewrite: true,
            timeouts: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared: 1,
        routing: Some(Routing {
            ryw: false,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        error_rate: 0,
        seed: 0,
    };
    let steps = [
        Step::Batch(vec![Ext::Parse("s1", "PREPARE q AS SELECT 1".into())]),
        Step::Query("SELECT 1".into()),
        Step::Query("BEGIN".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_garbage` once its statement-record check failed the target
/// (minimal input: transaction mode with mapping, one statement per server; one batch
/// `Describe S ""`, `Parse s1 "SELECT 1"`, `Parse s2 "SELECT $1"`, `Sync`). The Describe
/// fails, so the server skips the rest: `Parse sluice_1`, the `Close sluice_1` that made
/// room for s2, and `Parse sluice_2`. Undoing them first to last put sluice_1 back after
/// forgetting it (the record then held a statement the server never had: the next Bind
/// of it would fail with 26000). Fixed: what skipped messages did is undone last first.
#[test]
fn a_skipped_batch_is_undone_last_first() {
    let limits = Limits {
        mode: PoolMode::Transaction,
        max_message: 65536,
        idle_txn: None,
        reset_query: String::new(),
        rewrite: true,
        timeouts: None,
        listen_here: false,
    };
    let registry = std::sync::Arc::new(crate::prepare::Registry::default());
    let mut r = super::tests::rig_limits(limits, &[], registry, 1);
    let mut batch = msg(b'D', b"S\0");
    batch.extend(parse("s1", "SELECT 1"));
    batch.extend(parse("s2", "SELECT $1"));
    batch.extend(sync());
    r.client(&batch);
    r.expect_checkout();
    let sent = String::from_utf8_lossy(&r.sent_to_server()).into_owned();
    assert!(
        sent.contains("Ssluice_1\0"),
        "room is made for s2: {sent:?}"
    );
    let mut answer = error("26000", "unnamed prepared statement does not exist");
    answer.extend(ready(b'I'));
    r.server(&answer);
    assert_eq!(tags(&r.sent_to_client()), "EZ");
    let (state, how) = r.expect_release();
    assert_eq!(how, Release::Clean);
    assert!(!state.statements.contains(1) && !state.statements.contains(2));
    assert!(r.core.map.names.stmts.is_empty());
}

/// Found by `fuzz_session_routed` once its statement-record check failed the target
/// (minimal input below: one statement per server, the model failing statements at
/// random). `PREPARE p1` is sent as `PREPARE sluice_1`, and the batch pipelined behind it
/// makes room for s1's statement by closing sluice_1; the PREPARE fails, and its
/// settling forgets sluice_1 out of turn, so when the batch's Bind fails and the skipped
/// Close is undone the record gains a statement the server never had. Fixed: a
/// statement that changes the record waits while a SQL `PREPARE` or an earlier unit's
/// answers may still change it (`Mapping::any_unsettled`).
#[test]
fn a_batch_behind_a_failing_sql_prepare_waits_for_it() {
    let setup = Setup {
        limits: Limits {
            mode: PoolMode::Transaction,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: String::new(),
            rewrite: true,
            timeouts: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared: 1,
        routing: Some(Routing {
            ryw: false,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        error_rate: 64,
        seed: 4465907792656659898,
    };
    let steps = [
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Batch(vec![Ext::Bind("", ""), Ext::Parse("s1", "SELECT 1".into())]),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(1));
    s.event(Event::Client(1));
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
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

fn one_per_server(max_prepared: usize, routing: Option<Routing>, rate: u8, seed: u64) -> Setup {
    Setup {
        limits: Limits {
            mode: PoolMode::Transaction,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: String::new(),
            rewrite: true,
            timeouts: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared,
        routing,
        error_rate: rate,
        seed,
    }
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
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
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

/// Found by `fuzz_session_routed` (minimal input: transaction mode with read-your-writes;
/// `RESET work_mem` (a write: it goes to the primary, whose LSN is then the session's),
/// then `BEGIN READ ONLY`, a read, which goes to the replica behind a probe sent ahead
/// of it; the model's probe answer is no LSN, a miss). The unit behind the missed probe
/// ran and opened a transaction: its ReadyForQuery said `T`, but `retry_refused` took
/// every dropped unit for over and the replica for idle (status forced to `I`) and
/// released it clean, mid-transaction, to the next client. Fixed: the unit's own
/// ReadyForQuery sets the status, and a replica not idle after it is closed.
#[test]
fn a_transaction_begun_behind_a_missed_probe_is_not_released_clean() {
    let mut setup = one_per_server(1, None, 0, 0);
    setup.routing = Some(Routing {
        ryw: true,
        report_lsn: false,
        retry: false,
        never_primary: false,
    });
    let steps = [
        Step::Query("RESET work_mem".into()),
        Step::Query("BEGIN READ ONLY".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(20));
    s.event(Event::Server(1));
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
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

/// Found by `fuzz_session_routed` (minimal input: read-your-writes; `PREPARE p1(int) AS
/// SELECT $1` (a write, on the primary), `SET pgsluice.route = replica`, then
/// `COPY t FROM STDIN` and a CopyFail). A fault of the model server: its replica
/// accepted COPY FROM (CopyInResponse) and waited for the client's data, which the core
/// holds until the probe sent ahead has settled, so both waited. A hot standby refuses
/// COPY FROM as any write (25006) before asking for data; the model now does too.
#[test]
fn a_copy_from_behind_a_probe_on_the_replica_is_answered() {
    let mut setup = one_per_server(1, None, 0, 0);
    setup.routing = Some(Routing {
        ryw: true,
        report_lsn: false,
        retry: false,
        never_primary: false,
    });
    let steps = [
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Query("SET pgsluice.route = replica".into()),
        Step::Copy(0, false),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_core` (minimal input: the first checkout unreachable; then
/// `PREPARE p1` twice, `COPY t FROM STDIN` with a CopyFail, `PREPARE p1` again, with the
/// checkouts unreachable, reused, reused in turn). The COPY's checkout failed, so its
/// Query was answered with the error, and the client's CopyFail, with no COPY running,
/// then asked for a server of its own; queued for it with nothing to answer, the server
/// was released clean with those bytes unsent. Fixed: CopyData, CopyDone and CopyFail
/// with no server held (so no COPY running) are dropped, as PostgreSQL ignores them
/// outside a COPY.
#[test]
fn copy_messages_after_a_refused_copy_ask_for_no_server() {
    let steps = [
        Step::Query("SELECT 1".into()),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Copy(0, false),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let attach = vec![Attach::Unreachable, Attach::Reuse, Attach::Reuse];
    let mut s = Session::new(one_per_server(1, None, 0, 0), bytes, attach);
    s.event(Event::Client(1));
    s.event(Event::Client(1));
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` (minimal input: routing, startup settings; an empty
/// batch (`Sync`), `PREPARE p1(int) AS SELECT $1`, `INSERT`, in one read; the replica lost
/// once the settings replay was answered). The Sync went to the replica with a retry kept
/// for it; the SQL-level PREPARE behind it was forwarded by the statement mapping, which
/// skipped step 5, so the retry still thought the Sync its whole unit. On the server's
/// loss the Sync was replayed on the primary and the PREPARE, already sent to the lost
/// replica, was never answered. Fixed: a Query the SQL-level mapping forwards ends a
/// retry kept for the unit before it, as any other frame past the unit does.
#[test]
fn an_sql_prepare_behind_a_kept_read_ends_its_retry() {
    let mut setup = one_per_server(1, None, 0, 0);
    setup.routing = Some(Routing {
        ryw: false,
        report_lsn: false,
        retry: false,
        never_primary: false,
    });
    setup.startup = vec![
        ("application_name".into(), "fuzz".into()),
        ("search_path".into(), "a, b".into()),
    ];
    let steps = [
        Step::Batch(vec![]),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Query("INSERT INTO t VALUES (1)".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(1 << 20));
    s.event(Event::Server(1 << 20));
    s.event(Event::ServerLost);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}
