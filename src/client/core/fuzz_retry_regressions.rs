//! Failures the session core's fuzz targets found in the replay of read units that a
//! replica refused or lost (`retry.rs`), as recorded message sequences: each test names
//! the minimal input, what went wrong and how it is fixed. (Other routing failures:
//! `fuzz_regressions.rs`.)

use super::fuzz_harness::{Attach, Routing, Session};
use super::fuzz_regressions::one_per_server;
use super::fuzz_tests::{Step, encode};

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
