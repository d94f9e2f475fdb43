//! Failures the session core's fuzz target found, as recorded message sequences (each
//! test names the minimal input and what went wrong). Those not yet fixed are ignored
//! with the reason; the fuzz harness counts them (stalls, statement-record
//! disagreements) or leaves their input out (Terminate with a body) so that long runs
//! look further.

use std::time::Duration;

use super::Limits;
use super::fuzz_harness::{Attach, Routing, Session, Setup, route};
use super::fuzz_tests::{Ext, Step, encode};
use super::tests::{bind, complete, error, msg, parse, query, ready, rig, sync, tags};
use super::{Action, AttachError, Release};
use crate::config::PoolMode;
use crate::server::{CloseReason, ServerState};

/// Found by `fuzz_session_routed` (minimal input: startup `application_name=fuzz`,
/// transaction mode, the client sends `SET work_mem = '8MB'` and `SELECT 1` in one
/// read; the server takes the settings replay but does not answer it within
/// CHORE_TIMEOUT). `chore_timed_out` answers the first unit with an error (refuse_unit)
/// but, unlike `attach_failed`, does not `step` afterwards: the second Query stays in
/// the client buffer, and since the driver only steps the core when bytes arrive, a
/// client that pipelined its statements waits for ever.
#[test]
#[ignore = "known stall in client/core/chores.rs (chore_timed_out, Chore::Replay): no step after refuse_unit"]
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
/// rest of the Query arrives, `step` still does not look at it, and a client waiting for
/// its answers waits for ever.
#[test]
#[ignore = "known stall in client/core/client.rs (scan_client): c_need counts forwarded bytes after they left the buffer"]
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
/// `scan_client` drops it with `cin.split_to(h.frame_len)` while only part of it is in
/// the buffer: `split_to out of bounds`, a panic on a client's bytes.
#[test]
#[ignore = "known panic in client/core/client.rs (scan_client, fe::TERMINATE): split_to past the buffer"]
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
/// reads a Parse's text as if it ran (`inspect_text` for `fe::PARSE` in `whole_frame`),
/// so a DISCARD ALL that is only parsed makes the mapping forget every statement
/// (`forget_all`) while the server keeps `sluice_1`. The next client given this server
/// and needing statement 1 sends `Parse sluice_1` and gets 42P05 "already exists".
#[test]
#[ignore = "known: client/core/client.rs whole_frame treats a parsed DISCARD ALL as run (forget_all)"]
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
    assert_eq!(how, Release::Clean);
    assert!(
        state.statements.contains(1),
        "the server still holds sluice_1 (DISCARD ALL was never executed)"
    );
}

/// Found by `fuzz_session_core` (minimal input: statement mode with mapping, the client
/// pipelines `Bind "" ""`, `Parse s1 "SELECT 1"`, `Sync`, `Parse s1 "SELECT 1"`, `Sync`).
/// The first batch fails at its Bind, so the server skips its Parse; the second batch's
/// Parse of the same `sluice_1` succeeds. When the first batch's error comes back, the
/// mapping forgets `sluice_1` although the Parse sent after that Sync prepared it: the
/// record says the server lacks a statement it holds, and the next Parse of it on this
/// server fails with 42P05.
#[test]
#[ignore = "known: client/core statement mapping forgets a Parse pipelined after a failed batch"]
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
    assert_eq!(sent.matches("sluice_1\0SELECT 1").count(), 2, "{sent:?}");
    // The Bind fails and its batch is skipped to Sync; the second Parse succeeds.
    let mut answer = error("26000", "unnamed prepared statement does not exist");
    answer.extend(ready(b'I'));
    answer.extend(msg(b'1', b""));
    answer.extend(ready(b'I'));
    r.server(&answer);
    r.sent_to_client();
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
/// and returns true, so `scan_client` stops (`Stop::Yield`) with the next unit unread:
/// only new client bytes would make the core look at it again.
#[test]
#[ignore = "known stall in client/core/client.rs (ask_for_server): no scan after refuse_unit"]
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
/// returns `Stop::Yield`), and `SELECT 1`, pipelined behind it, is never looked at.
#[test]
#[ignore = "known stall in client/core/client.rs (sql_prepared, SqlStep::Answer): no scan after the release"]
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
    s.fail_on_stall = true;
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
/// comes; the client has an ErrorResponse naming `sluice_1` and waits for ever. (When a
/// Sync of the client's follows, the skip ends there, but the Query stays unanswered:
/// one ReadyForQuery short, `fuzz_session_routed`'s variant.)
#[test]
#[ignore = "known hang in client/core (statement mapping): a re-prepare before a Query has no Sync, and the record missed a skipped Close"]
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
    s.fail_on_stall = true;
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}
