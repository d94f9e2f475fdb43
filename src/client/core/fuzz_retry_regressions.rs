//! Failures the session core's fuzz targets found in the replay of read units that a
//! replica refused or lost (`retry.rs`), as recorded message sequences: each test names
//! the minimal input, what went wrong and how it is fixed. (Other routing failures:
//! `fuzz_regressions.rs`.)

use super::fuzz_harness::{Attach, Event, Routing, Session};
use super::fuzz_inputs::{Ext, Step, encode};
use super::fuzz_regressions::{one_per_server, plain_routing};

/// Found by `fuzz_session_routed` while units pipelined behind a kept read were made
/// replayable (minimal input: retry of read-only refusals; a batch that is only a Sync,
/// then two `COPY t FROM STDIN` ended by CopyFail, all in one write). The CopyFail past
/// the first COPY could not be kept, but only the unit before it lost its chance: the
/// second COPY was kept behind it, so the kept bytes skipped the CopyFail between them,
/// and the replay after the replica refused them stalled the session. Fixed: a frame past
/// the kept units that cannot be kept ends the chance of every unit kept.
#[test]
fn a_frame_that_cannot_be_kept_ends_every_kept_units_chance() {
    let setup = one_per_server(
        1,
        Some(Routing {
            ryw: false,
            report_lsn: false,
            retry: true,
            never_primary: false,
        }),
        0,
        0,
    );
    let steps = [
        Step::Batch(vec![]),
        Step::Copy(0, false),
        Step::Copy(0, false),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse, Attach::Reuse]);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` and `fuzz_session_garbage` on the same change (minimal
/// input: LISTEN served by pgsluice; a batch that is only a Sync, then `SELECT
/// pg_listening_channels()` pipelined behind it, the replica lost before answering). The
/// Query was kept behind the Sync as pgsluice had rewritten it (the client's channels
/// spelled out), so the replay put back more bytes than the client had sent. Fixed: a
/// unit with a frame pgsluice rewrote is not kept for a replay (as a unit behind a probe
/// already was not, `ryw.rs`), and ends the chance of those kept before it.
#[test]
fn a_unit_pgsluice_rewrote_is_not_kept_for_a_replay() {
    let mut setup = one_per_server(1, Some(plain_routing()), 0, 8316289676302977020);
    setup.limits.listen_here = true;
    setup.startup = vec![("application_name".into(), "fuzz".into())];
    let steps = [
        Step::Batch(vec![]),
        Step::Query("SELECT pg_listening_channels()".into()),
    ];
    let (bytes, _, _) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(5));
    s.event(Event::Server(1 << 20));
    s.event(Event::Client(1 << 20));
    s.event(Event::ServerLost);
    s.finish();
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` on the same change (minimal input: a batch that is only
/// a Sync, `PREPARE p1(int) AS SELECT $1`, a batch `Parse s1`, all in one write, the
/// replica lost before answering). The SQL `PREPARE`, which pgsluice answers through its
/// own statement, was kept behind the Sync as the client sent it; after the loss the
/// replay met a mapping that had already recorded it, and the session stalled. Fixed: an
/// SQL `PREPARE` past a kept unit ends the chance of every unit kept, as before units
/// could be kept behind one another.
#[test]
fn an_sql_prepare_is_not_kept_behind_a_read() {
    let setup = one_per_server(1, Some(plain_routing()), 0, 0);
    let steps = [
        Step::Batch(vec![]),
        Step::Query("PREPARE p1(int) AS SELECT $1".into()),
        Step::Batch(vec![Ext::Parse("s1", "SELECT 1".into())]),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(1 << 20));
    s.event(Event::ServerLost);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` on 01f5ec1, and there before it (minimal input: the
/// retry of read-only refusals; startup `search_path`; `SELECT nextval('s')` tried on the
/// replica, which refuses it, then lost while the refusal's answer was being dropped).
/// The read could no longer be replayed by the loss path (its chance was taken by the
/// refusal), so the session ended with 08006, and that error waited behind the output
/// the retry held: the client was never told. Fixed: a read lost while its refusal is
/// dropped goes to the primary, as at the refusal's end; and a FATAL error never waits
/// behind held output.
#[test]
fn a_refused_read_lost_before_its_end_goes_to_the_primary() {
    let mut setup = one_per_server(
        1,
        Some(Routing {
            ryw: false,
            report_lsn: false,
            retry: true,
            never_primary: false,
        }),
        0,
        0,
    );
    setup.limits.rewrite = false;
    setup.startup = vec![("search_path".into(), "a, b".into())];
    let steps = [
        Step::Query("SELECT 1".into()),
        Step::Batch(vec![Ext::Parse("s1", "SELECT 1".into())]),
        Step::Query("SELECT nextval('s')".into()),
        Step::Query("RESET SESSION AUTHORIZATION".into()),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    s.event(Event::Client(1 << 20));
    for n in [1 << 20, 1 << 20, 12, 3, 6, 22, 22, 5] {
        s.event(Event::Server(n));
    }
    s.event(Event::ServerLost);
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}
