//! Failures the session core's fuzz targets found, as recorded message sequences: each
//! test names the minimal input, what went wrong and how it is fixed. Here stalls,
//! hangs, panics and routing; the record of a server's prepared statements in
//! `fuzz_record_regressions.rs` and `fuzz_drop_regressions.rs`.

use std::time::Duration;

use super::Limits;
use super::fuzz_harness::{Attach, Event, Routing, Session, Setup, route};
use super::fuzz_inputs::{Ext, Step, encode};
use super::tests::{complete, msg, query, ready, rig, tags};
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
            reset_query: "".into(),
            rewrite: true,
            timeouts: None,
            wait_timeout: None,
            park_after: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared: 1,
        routing: Some(plain_routing()),
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
            reset_query: "".into(),
            rewrite: true,
            timeouts: None,
            wait_timeout: None,
            park_after: None,
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
    replay(setup, &steps, &[]);
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

/// Found by `fuzz_session_garbage` on main after the core11 merge (minimal input:
/// transaction mode with routing, no read-your-writes; `PREPARE p2 AS INSERT ...`, a stray
/// CopyData (`d`, 5 bytes of body), the same `PREPARE` again; the client's bytes arrive
/// 12, 14 and 23 at a time). The CopyData's header went out behind the PREPARE, its body
/// was queued for the server after it, and the PREPARE's ReadyForQuery, read before
/// those 5 bytes were written, ended the unit: the server was released clean with the
/// rest of a frame still to send, which would have reached it behind the next client's
/// bytes. Fixed: a server with bytes still queued for it is closed, not handed on.
#[test]
fn a_server_with_bytes_queued_for_it_is_not_released_clean() {
    let mut setup = one_per_server(1, None, 0, 0);
    setup.routing = Some(plain_routing());
    let prepare = b"PREPARE p2 AS INSERT INTO t VALUES (1)\0";
    let mut bytes = Vec::new();
    for part in [&prepare[..], &[0u8; 5][..], &prepare[..]] {
        let tag = if part.len() == 5 { b'd' } else { b'Q' };
        bytes.push(tag);
        bytes.extend_from_slice(&(part.len() as u32 + 4).to_be_bytes());
        bytes.extend_from_slice(part);
    }
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    for n in [12, 14, 23] {
        s.event(Event::Client(n));
    }
    s.finish();
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` on main after the listenview and instr3 merges
/// (minimal input: read-your-writes, LISTEN served by pgsluice; `RESET work_mem` (a
/// write, on the primary), `SET pgsluice.route = replica`, `SELECT
/// pg_listening_channels()`, then a batch `Close S ""`, `Sync`). The read went to the
/// replica right behind a probe, with a retry keeping the unit as the client sent it;
/// pgsluice then rewrote the text (the client's channels), so the unit that went out was
/// not the one the retry counted, the probe's bookkeeping was never settled, and every
/// later frame (the batch) waited behind it for good. Fixed: a unit whose text pgsluice
/// rewrites (`pg_prepared_statements`, `pg_listening_channels()`) does not go behind the
/// probe: the probe runs alone first, as for an SQL `PREPARE`.
#[test]
fn a_text_pgsluice_rewrites_waits_for_the_probe() {
    let mut setup = one_per_server(1, None, 0, 7478434116065579604);
    setup.limits.listen_here = true;
    setup.routing = Some(Routing {
        ryw: true,
        report_lsn: false,
        retry: false,
        never_primary: false,
    });
    let steps = [
        Step::Query("RESET work_mem".into()),
        Step::Query("SET pgsluice.route = replica".into()),
        Step::Query("SELECT pg_listening_channels()".into()),
        Step::Batch(vec![Ext::Close(b'S', "")]),
    ];
    replay(setup, &steps, &[]);
}

/// Runs `steps` (encoded as the fuzz targets do) through a session on `setup`, each
/// checkout reusing a pooled server, with `events` first and then everything left:
/// every client message is answered (or the client closed) and no invariant is broken.
pub(super) fn replay(setup: Setup, steps: &[Step], events: &[Event]) {
    let (bytes, asked, terminated) = encode(steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    for &e in events {
        s.event(e);
    }
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Routing on, with none of its options (no read-your-writes, no LSN reports, no
/// retry, the primary allowed to read).
pub(super) fn plain_routing() -> Routing {
    Routing {
        ryw: false,
        report_lsn: false,
        retry: false,
        never_primary: false,
    }
}

pub(super) fn one_per_server(
    max_prepared: usize,
    routing: Option<Routing>,
    rate: u8,
    seed: u64,
) -> Setup {
    Setup {
        limits: Limits {
            mode: PoolMode::Transaction,
            max_message: 65536,
            idle_txn: Some(Duration::from_secs(10)),
            reset_query: "".into(),
            rewrite: true,
            timeouts: None,
            wait_timeout: None,
            park_after: None,
            listen_here: false,
        },
        startup: Vec::new(),
        max_prepared,
        routing,
        error_rate: rate,
        seed,
    }
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
    replay(setup, &steps, &[Event::Client(20), Event::Server(1)]);
}

/// Found by `fuzz_session_core` (integration/fuzz.sh, stop 32; seed
/// 15730445444900789710, present since at least stop 31's code): `PREPARE sluice_1 AS
/// SELECT ` with room for one statement. The client's name is pgsluice's server name for
/// the statement's text (registry id 1), so the server held `sluice_1`, pgsluice's own
/// and recorded; the harness took it for the client's statement under its own name,
/// handed on to the next client. A fault of the harness: a client name in pgsluice's
/// name space is never prepared under that name (`own_names.rs`).
#[test]
fn a_client_statement_named_like_ours_is_not_taken_for_its_own_name() {
    let steps = [Step::Query("PREPARE sluice_1 AS SELECT ".into())];
    replay(one_per_server(1, None, 0, 0), &steps, &[]);
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
    replay(setup, &steps, &[]);
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
    setup.routing = Some(plain_routing());
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
