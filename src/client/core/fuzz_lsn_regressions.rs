//! Failures the session core's fuzz targets found in the write-LSN read sent behind a
//! lone write (`write_lsn.rs`), as recorded message sequences: each test names the
//! minimal input, what went wrong and how it is fixed.

use crate::config::PoolMode;

use super::fuzz_harness::{Attach, Event, Routing, Session};
use super::fuzz_inputs::{Ext, Step, encode};
use super::fuzz_regressions::{one_per_server, replay};

/// Found by `fuzz_session_routed` (minimal input: read-your-writes; `UPDATE t SET a = 1`
/// and the first bytes of an Execute pipelined behind it; the server's answer to the
/// write, then no more until the chore deadline). The write-LSN read behind the write
/// timed out while the client's Execute was half sent to that server: the server was
/// closed and the session went on, asking for a new server with the rest of the frame
/// counted as sent. Fixed: when the read behind a write fails with anything of the
/// client's sent behind it (a whole unit, an open batch, part of a frame), the session
/// ends with 08006, as when a server is lost mid-unit.
#[test]
fn a_write_lsn_read_lost_with_a_frame_half_sent_behind_it_ends_the_session() {
    let setup = one_per_server(
        1,
        Some(Routing {
            ryw: true,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        0,
        0,
    );
    let steps = [
        Step::Query("UPDATE t SET a = 1".into()),
        Step::Batch(vec![Ext::Execute("")]),
    ];
    let (bytes, asked, terminated) = encode(&steps);
    let mut s = Session::new(setup, bytes, vec![Attach::Reuse]);
    for e in [
        Event::Client(11),
        Event::Client(19),
        Event::Server(18),
        Event::Tick(3000),
        Event::Tick(3000),
    ] {
        s.event(e);
    }
    s.finish();
    s.check_answered(asked, terminated);
    assert_eq!(s.violation, None);
}

/// Found by `fuzz_session_routed` (integration/fuzz.sh, stop 34; seed 7534482101765175000;
/// from stop 33's write-LSN read prepared per connection, `aac303a`): statement mode with
/// read-your-writes and room for one statement; a batch (Describe of a missing
/// statement, Parse), then `INSERT` and `BEGIN`, the model server failing one message in
/// 64. The write-LSN read went behind the `INSERT` with the Parse of its statement,
/// recorded when sent; its answer was not a success, and the session kept the server
/// (the `BEGIN` pipelined behind), so the record listed a statement the server did not
/// hold. Fixed: a Parse of the read's statement that its answer does not confirm is taken
/// out of the record (`Core::write_lsn_parse_answered`).
#[test]
fn an_unconfirmed_parse_of_the_write_lsn_read_leaves_no_record() {
    let mut setup = one_per_server(
        1,
        Some(Routing {
            ryw: true,
            report_lsn: false,
            retry: false,
            never_primary: false,
        }),
        64,
        241_851_689_224_570_690,
    );
    setup.limits.mode = PoolMode::Statement;
    setup.startup = vec![("search_path".into(), "a, b".into())];
    let steps = [
        Step::Batch(vec![
            Ext::Describe(b'S', ""),
            Ext::Parse("", "SELECT 1".into()),
        ]),
        Step::Query("INSERT INTO t VALUES (1)".into()),
        Step::Query("BEGIN".into()),
    ];
    replay(setup, &steps, &[]);
}
