//! Fuzz targets for the session core: client conversations (well-formed protocol, or
//! bytes of anything) against model servers, in arbitrary interleavings with the
//! driver's events; and `SET pgsluice.*` parsing. The invariants are checked by
//! [`super::fuzz_harness`]: no panic, bounded queues, a server released clean only at a
//! transaction boundary, every request answered or the client told why it was closed.

use proptest::prelude::*;

use super::fuzz_harness::{Attach, Event, Session, Setup};
use super::fuzz_inputs::{attach_plan, encode, event, frame, setup, step};
use super::ours::{Ours, ours, parse};
use crate::fuzz;

/// Plays a conversation and checks every invariant; `well_formed` adds "every request
/// is answered".
fn play(
    setup: Setup,
    bytes: Vec<u8>,
    well_formed: Option<(usize, bool)>,
    attach: Vec<Attach>,
    events: &[Event],
) -> Result<(), TestCaseError> {
    let mut s = Session::new(setup, bytes, attach);
    for e in events {
        s.event(*e);
    }
    s.finish();
    if let Some((asked, terminated)) = well_formed {
        s.check_answered(asked, terminated);
    }
    match s.violation {
        Some(v) => Err(TestCaseError::fail(v)),
        None => Ok(()),
    }
}

#[test]
fn fuzz_session_core() {
    let input = (
        setup(false),
        prop::collection::vec(step(), 0..10),
        attach_plan(),
        prop::collection::vec(event(), 0..48),
    );
    fuzz::run(
        "session_core",
        300,
        input,
        |(setup, steps, attach, events)| {
            let (bytes, asked, terminated) = encode(&steps);
            play(setup, bytes, Some((asked, terminated)), attach, &events)
        },
    );
}

#[test]
fn fuzz_session_routed() {
    let input = (
        setup(true),
        prop::collection::vec(step(), 0..10),
        attach_plan(),
        prop::collection::vec(event(), 0..48),
    );
    fuzz::run(
        "session_routed",
        200,
        input,
        |(setup, steps, attach, events)| {
            let (bytes, asked, terminated) = encode(&steps);
            play(setup, bytes, Some((asked, terminated)), attach, &events)
        },
    );
}

/// The short cut for mid-unit frames (`mid_unit.rs`) changes nothing: the client receives
/// the same bytes, and the same invariants hold, with every frame taking the full scan.
#[test]
fn fuzz_mid_unit_short_cut_changes_nothing() {
    let input = (
        prop_oneof![setup(false), setup(true)],
        prop::collection::vec(step(), 0..10),
        attach_plan(),
        prop::collection::vec(event(), 0..48),
    );
    fuzz::run(
        "session_mid_unit",
        200,
        input,
        |(setup, steps, attach, events)| {
            let (bytes, ..) = encode(&steps);
            let run = |slow: bool| {
                super::mid_unit::SLOW_ONLY.set(slow);
                let mut s = Session::new(setup.clone(), bytes.clone(), attach.clone());
                for e in &events {
                    s.event(*e);
                }
                s.finish();
                super::mid_unit::SLOW_ONLY.set(false);
                (s.received, s.closed, s.violation)
            };
            let quick = run(false);
            let full = run(true);
            prop_assert_eq!(&quick.2, &None);
            prop_assert_eq!(quick, full);
            Ok(())
        },
    );
}

/// Anything a client may send: well-formed units with random frames and bytes between.
#[test]
fn fuzz_session_garbage() {
    let junk = prop_oneof![
        3 => step().prop_map(|s| encode(&[s]).0),
        2 => (prop::sample::select(&b"QPBDECSHFXdcfpZ\0\xff"[..]), prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(t, b)| {
                let mut out = Vec::new();
                frame(&mut out, t, &b);
                out
            }),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ];
    let input = (
        prop_oneof![setup(false), setup(true)],
        prop::collection::vec(junk, 0..8),
        attach_plan(),
        prop::collection::vec(event(), 0..48),
    );
    fuzz::run(
        "session_garbage",
        300,
        input,
        |(setup, parts, attach, events)| play(setup, parts.concat(), None, attach, &events),
    );
}

#[test]
fn fuzz_set_pgsluice() {
    let value = prop_oneof![
        "[a-z0-9/']{1,10}",
        Just("DEFAULT".to_string()),
        Just("'0/16B3748'".to_string()),
        ".{0,6}",
    ];
    let shaped = (
        prop::sample::select(&["SET", "set", "RESET", " SeT"][..]),
        prop::sample::select(&[" ", "  ", "\t", "\n", "€", ""][..]),
        prop::sample::select(
            &[
                "pgsluice.route",
                "PGSLUICE.min_lsn",
                "pgsluice.€",
                "pgsluic",
                "x",
            ][..],
        ),
        prop::sample::select(&[" = ", "=", " TO ", " to", "€", " ", ""][..]),
        value,
        prop::sample::select(&["", ";", " ; ", "; SELECT 1"][..]),
    )
        .prop_map(|(verb, sp, name, sep, value, end)| {
            if verb.trim().eq_ignore_ascii_case("reset") {
                format!("{verb}{sp}{name}{end}")
            } else {
                format!("{verb}{sp}{name}{sep}{value}{end}")
            }
        });
    let text = prop_oneof![3 => shaped, 1 => fuzz::sql_text()];
    fuzz::run(
        "set_pgsluice",
        4000,
        (text, any::<bool>()),
        |(text, junk_tail)| {
            let parsed = parse(&text);
            if let Some(Ours { name, value }) = &parsed {
                prop_assert!(name.starts_with("pgsluice."), "{name}");
                prop_assert!(!name.contains(char::is_whitespace));
                prop_assert!(value.as_deref().is_none_or(|v| !v.contains(';')));
            }
            // The frame-level check agrees with the text-level parse for a whole Query.
            let mut body = text.clone().into_bytes();
            body.push(0);
            if junk_tail {
                body.extend_from_slice(b"\xff\x00junk");
            }
            let from_frame = ours(&body);
            if from_frame.is_some() {
                // The frame's text ends at its first NUL.
                let head = text.split('\0').next().unwrap_or_default();
                prop_assert_eq!(from_frame, parse(head));
            }
            Ok(())
        },
    );
}
