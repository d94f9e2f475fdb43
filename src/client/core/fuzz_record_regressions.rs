//! Failures the session core's fuzz targets found in the record of a server's prepared
//! statements (batches cut short by errors, skipped messages undone, cleanups), as
//! recorded message sequences: each test names the minimal input, what went wrong and
//! how it is fixed. (Statements dropped: `fuzz_drop_regressions.rs`; stalls, hangs and
//! routing: `fuzz_regressions.rs`.)

use std::time::Duration;

use super::Limits;
use super::fuzz_harness::{Attach, Event, Routing, Session, Setup};
use super::fuzz_inputs::{Ext, Step, encode};
use super::fuzz_regressions::{plain_routing, replay};
use super::tests::{bind, error, msg, parse, ready, rig, sync, tags};
use super::{Action, Release};
use crate::config::PoolMode;

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
        Step::Batch(vec![Ext::Parse("s1", "PREPARE q AS SELECT 1".into())]),
        Step::Query("SELECT 1".into()),
        Step::Query("BEGIN".into()),
    ];
    replay(setup, &steps, &[]);
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
        reset_query: "".into(),
        rewrite: true,
        timeouts: None,
        wait_timeout: None,
        park_after: None,
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
        error_rate: 64,
        seed: 4465907792656659898,
    };
    let steps = [
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Batch(vec![Ext::Bind("", ""), Ext::Parse("s1", "SELECT 1".into())]),
    ];
    replay(setup, &steps, &[Event::Client(1), Event::Client(1)]);
}

/// Found by `fuzz_session_routed` on main after the core11 merge (minimal input:
/// read-your-writes, one statement per server; `Parse s1 "COMMIT"` + `Sync` (on the
/// replica, which records `sluice_1`), `PREPARE p2 AS INSERT ...` twice (a write, on the
/// primary, then answered by pgsluice), then `DISCARD ALL`, a read, sent to that replica
/// behind a probe; the model's probe misses). The unit behind the missed probe ran on the
/// replica and dropped `sluice_1`, but its answer is dropped unread, so the mapping never
/// saw the DISCARD ALL answered, and the replica went back clean with a record saying it
/// still held `sluice_1`. Fixed: a server released while a DISCARD ALL or DEALLOCATE ALL
/// is in flight (`Mapping::drop_in_flight`) has an unsure record and is closed.
#[test]
fn a_discard_all_behind_a_missed_probe_does_not_leave_a_wrong_record() {
    let mut setup = super::fuzz_regressions::one_per_server(1, None, 0, 0);
    setup.routing = Some(Routing {
        ryw: true,
        report_lsn: false,
        retry: false,
        never_primary: false,
    });
    let steps = [
        Step::Batch(vec![Ext::Parse("s1", "COMMIT".into())]),
        Step::Query("PREPARE p2 AS INSERT INTO t VALUES (1)".into()),
        Step::Query("PREPARE p2 AS INSERT INTO t VALUES (1)".into()),
        Step::Query("DISCARD ALL".into()),
    ];
    replay(setup, &steps, &[]);
}

/// Found by `fuzz_session_garbage` on 95d1581, and there on c0b8e53 already (minimal
/// input, one byte at a time: `END`; `Parse "sluice_1" "SELECT 1"`, `Sync`; a Describe with
/// no body; `DEALLOCATE sluice_1` as a Query inside that open batch; `Sync`). On the second
/// server pgsluice prepares the statement first, hidden, with its own Sync, in the middle of
/// the client's batch that the malformed Describe has already failed: the server skips the
/// hidden Parse and answers it with nothing, the DEALLOCATE then fails, and the record kept
/// a statement the server does not have. Fixed: a hidden prepare whose ReadyForQuery comes
/// with no ParseComplete (or CommandComplete) did not happen.
#[test]
fn a_deallocate_inside_a_failed_batch_leaves_no_wrong_record() {
    let setup = super::fuzz_regressions::one_per_server(1, Some(plain_routing()), 0, 0);
    let parts: [&[u8]; 5] = [
        &[81, 0, 0, 0, 8, 69, 78, 68, 0],
        &[
            80, 0, 0, 0, 24, 115, 108, 117, 105, 99, 101, 95, 49, 0, 83, 69, 76, 69, 67, 84, 32,
            49, 0, 0, 0, 83, 0, 0, 0, 4,
        ],
        &[68, 0, 0, 0, 4],
        &[
            81, 0, 0, 0, 24, 68, 69, 65, 76, 76, 79, 67, 65, 84, 69, 32, 115, 108, 117, 105, 99,
            101, 95, 49, 0,
        ],
        &[83, 0, 0, 0, 4],
    ];
    let mut s = Session::new(setup, parts.concat(), vec![Attach::Reuse]);
    s.event(Event::Client(1));
    s.finish();
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_core` once calls outside the allowlist were watched in the fuzz
/// sessions (minimal input: `PREPARE p1`, `SET ROLE r`, then a `DO` block, with the model
/// failing one statement in four). The client's `p1` was prepared under its own name ahead
/// of the `DO` (`own_names.rs`); the hidden `DEALLOCATE p1` at the transaction's end failed
/// (not for being gone already), and the server was released clean still holding `p1`.
/// Fixed: such a failure closes the server.
#[test]
fn a_failed_deallocation_of_the_clients_own_names_closes_the_server() {
    let mut setup = super::fuzz_regressions::one_per_server(1, None, 64, 14720769142758305818);
    setup.startup = vec![
        ("datestyle".into(), "Postgres, MDY".into()),
        ("search_path".into(), "a, b".into()),
    ];
    let steps = [
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Query("SET ROLE r".into()),
        Step::Query("DO $$ BEGIN EXECUTE 'execute p1(1)'; END $$".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Fresh, Attach::Reuse]);
    for e in [
        Event::Client(20),
        Event::Client(16),
        Event::Server(1048576),
        Event::Server(19),
        Event::Client(14),
    ] {
        s.event(e);
    }
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` once calls outside the allowlist were watched in the fuzz
/// sessions (minimal input: read-your-writes on; `nextval` in an extended unit, an SQL
/// `PREPARE`, then a named Parse). The `nextval` call (outside the allowlist) marked the
/// transaction as running PL code, but the server went back after the writer's LSN was
/// read without the settings read-back, and the mark stayed: the next unit, a read sent
/// to the replica behind a probe, had the client's statement prepared under its own name
/// between the probe and the unit, and the session stalled. Fixed: the read-back runs
/// after the write LSN too (which takes the mark), and statements are prepared under their
/// own names only ahead of a frame that itself runs such code, never on a replica.
#[test]
fn a_sequence_read_then_sql_prepare_then_parse_on_a_routed_session_is_answered() {
    let mut setup = super::fuzz_regressions::one_per_server(
        1,
        Some(Routing {
            ryw: true,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        0,
        364430086957609432,
    );
    setup.startup = Vec::new();
    let steps = [
        Step::Batch(vec![Ext::Parse("", "SELECT nextval('s')".into())]),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Batch(vec![Ext::Parse("s1", "SELECT 1".into())]),
    ];
    replay(setup, &steps, &[]);
}

/// Found by `fuzz_session_core` (minimal input: statement mode with mapping; `Parse s1
/// "SELECT 1"` in a batch, then the Query `DISCARD ALLSELECT `). A fault of the model
/// server: it took any text starting `discard all` for `DISCARD ALL` and dropped its
/// statements, where PostgreSQL refuses `DISCARD ALLSELECT` as a syntax error. pgsluice
/// (rightly) saw no `DISCARD ALL`, and its record disagreed with the model's. The model
/// now requires the words to end there.
#[test]
fn a_word_run_into_discard_all_is_no_discard() {
    let mut setup = super::fuzz_regressions::one_per_server(200, None, 0, 0);
    setup.limits.mode = PoolMode::Statement;
    let steps = [
        Step::Batch(vec![Ext::Parse("s1", "SELECT 1".into())]),
        Step::Query("DISCARD ALLSELECT ".into()),
    ];
    replay(setup, &steps, &[Event::Client(1), Event::Client(1)]);
}

/// Found by `fuzz_session_routed` (minimal input: mapping on; a batch that is only `Bind
/// "" ""`, then `PREPARE "Quoted"AS SELECT `, one byte at a time). The client's quoted
/// name, run into `AS`, was replaced by the unquoted server name with nothing between:
/// `PREPARE sluice_1AS SELECT`, a syntax error on PostgreSQL, while the mapping recorded
/// `sluice_1` as prepared there. Fixed: the server name gets a blank on a side where it
/// would run into a word (`translate::splice`).
#[test]
fn a_quoted_prepare_name_run_into_as_is_prepared_as_sent() {
    let setup = super::fuzz_regressions::one_per_server(1, Some(plain_routing()), 0, 0);
    let steps = [
        Step::Batch(vec![Ext::Bind("", "")]),
        Step::Query("PREPARE \"Quoted\"AS SELECT ".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    for _ in 0..7 {
        s.event(Event::Client(1));
    }
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` (minimal input: statement mode with mapping and routing,
/// one Query `PREPARE--c\n SELECT AS SELECT `). pgsluice mapped it (`PREPARE--c\n sluice_1
/// AS SELECT `, which PostgreSQL runs: `--c` is a comment) and recorded the statement on
/// the server; the model server took `prepare--c` for the first word, answered it as some
/// other statement and held nothing, so the record check failed. The model was wrong, not
/// pgsluice: its first word now ends where PostgreSQL's lexer ends it. (That PostgreSQL
/// would refuse the client's own text, `SELECT` being a reserved word, is a fidelity gap of
/// the mapping, not of the record.)
#[test]
fn a_prepare_with_a_comment_after_the_keyword_is_recorded_as_the_server_holds_it() {
    let base = super::fuzz_regressions::one_per_server(1, Some(plain_routing()), 0, 0);
    let setup = Setup {
        limits: Limits {
            mode: PoolMode::Statement,
            ..base.limits.clone()
        },
        ..base
    };
    replay(
        setup,
        &[Step::Query("PREPARE--c\n SELECT AS SELECT ".into())],
        &[],
    );
}
