//! Fuzz targets: the startup packet and message framing, from arbitrary bytes and from
//! well-formed messages cut at arbitrary points.

use std::collections::BTreeMap;

use bytes::BytesMut;
use proptest::prelude::*;

use super::startup::{self, MAX_STARTUP_LEN, StartupPacket};
use super::*;
use crate::fuzz;

const CODES: &[u32] = &[
    196_608, 80_877_103, 80_877_104, 80_877_102, 131_072, 196_609, 0,
];

/// A first packet: a length word (right or not), a code, and a body of parameters or junk.
fn startup_packet() -> impl Strategy<Value = Vec<u8>> {
    let param = ("[a-z_]{0,6}|.{0,4}", ".{0,8}");
    let body = prop_oneof![
        prop::collection::vec(param, 0..5).prop_map(|ps| {
            let mut b = Vec::new();
            for (k, v) in ps {
                b.extend_from_slice(k.as_bytes());
                b.push(0);
                b.extend_from_slice(v.as_bytes());
                b.push(0);
            }
            b.push(0);
            b
        }),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    let code = prop_oneof![prop::sample::select(CODES), any::<u32>()];
    (code, body, any::<bool>(), any::<u32>()).prop_map(|(code, body, honest, len)| {
        let len = if honest { (body.len() + 8) as u32 } else { len };
        let mut p = len.to_be_bytes().to_vec();
        p.extend(code.to_be_bytes());
        p.extend(body);
        p
    })
}

#[test]
fn fuzz_startup_packet() {
    let input = prop_oneof![startup_packet(), prop::collection::vec(any::<u8>(), 0..64)];
    fuzz::run("startup_packet", 4000, input, |p| {
        let head = [0, 1, 2, 3].map(|i| p.get(i).copied().unwrap_or(0));
        if let Ok(len) = startup::packet_len(head) {
            prop_assert!((8..=MAX_STARTUP_LEN).contains(&len));
        }
        match startup::parse(&p) {
            Ok(StartupPacket::Startup(params)) => {
                prop_assert!(params.keys().all(|k| !k.is_empty() && !k.contains('\0')));
                prop_assert!(params.values().all(|v| !v.contains('\0')));
                // What was read encodes back to a packet that reads the same.
                let mut again = vec![0; 4];
                again.extend(196_608u32.to_be_bytes());
                for (k, v) in &params {
                    again.extend_from_slice(k.as_bytes());
                    again.push(0);
                    again.extend_from_slice(v.as_bytes());
                    again.push(0);
                }
                again.push(0);
                prop_assert_eq!(startup::parse(&again), Ok(StartupPacket::Startup(params)));
            }
            Ok(StartupPacket::Cancel { .. }) => prop_assert_eq!(p.len(), 16),
            Ok(_) | Err(_) => {}
        }
        Ok(())
    });
}

#[test]
fn fuzz_startup_options() {
    let word = "[a-z_.-]{1,8}=[^ \\\\]{0,6}";
    let options = prop_oneof![
        prop::collection::vec((prop::sample::select(&["-c ", "--", "-c"][..]), word), 0..4)
            .prop_map(|ws| {
                let words: Vec<String> = ws.into_iter().map(|(p, w)| format!("{p}{w}")).collect();
                words.join(" ")
            }),
        ".{0,40}",
        fuzz::sql_soup(8),
    ];
    fuzz::run("startup_options", 4000, options, |o| {
        let settings = startup::parse_options(&o);
        for (k, _) in &settings {
            prop_assert!(!k.contains('-'), "{k}");
        }
        Ok(())
    });
}

/// A frontend or backend message with a plausible tag and a body of anything.
fn message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let tag = prop_oneof![
        prop::sample::select(&b"QPBDECSHFXpdcfZSKT12n3tNRAIsG"[..]),
        any::<u8>(),
    ];
    (tag, prop::collection::vec(any::<u8>(), 0..40))
}

fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![tag];
    f.extend(((body.len() + 4) as i32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Splits a stream into frames as the core does: header first, then the whole frame
/// once it is there.
fn deframe(chunks: &[&[u8]], max: usize) -> Result<Vec<(u8, Vec<u8>)>, FrameError> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(h) = header(&buf, max)? {
            if buf.len() < h.frame_len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..h.frame_len).collect();
            out.push((h.tag, body(&frame).to_vec()));
        }
    }
    Ok(out)
}

#[test]
fn fuzz_framing() {
    let input = (
        prop::collection::vec(message(), 0..8),
        prop::collection::vec(0usize..64, 0..8),
        prop::collection::vec(any::<u8>(), 0..32),
    );
    fuzz::run("framing", 4000, input, |(msgs, cuts, junk)| {
        // Well-formed messages, cut anywhere, come out whole and in order.
        let stream: Vec<u8> = msgs.iter().flat_map(|(t, b)| encode(*t, b)).collect();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            let end = (at + c).min(stream.len());
            chunks.push(&stream[at..end]);
            at = end;
        }
        chunks.push(&stream[at..]);
        prop_assert_eq!(deframe(&chunks, 1 << 20), Ok(msgs.clone()));
        // A limit below a message's size is an error, never a panic or a short read.
        if let Some((t, b)) = msgs.first() {
            let len = b.len() + 5;
            prop_assert_eq!(
                header(&encode(*t, b), len - 1),
                Err(FrameError::TooLarge(len, len - 1))
            );
        }
        // Arbitrary bytes: a header is either absent, an error, or consistent.
        for start in 0..junk.len() {
            let rest = &junk[start..];
            match header(rest, 1 << 20) {
                Ok(None) => prop_assert!(rest.len() < HEADER_LEN),
                Ok(Some(h)) => {
                    prop_assert_eq!(h.tag, rest[0]);
                    let declared = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
                    prop_assert_eq!(h.frame_len, declared as usize + 1);
                    prop_assert!(h.frame_len >= HEADER_LEN && h.frame_len <= 1 << 20);
                }
                Err(_) => {}
            }
            let b = body(rest);
            prop_assert_eq!(b.len(), rest.len().saturating_sub(HEADER_LEN));
        }
        Ok(())
    });
}

#[test]
fn fuzz_cstr_and_error_fields() {
    let fields = prop::collection::vec(
        (
            prop::sample::select(&b"SVCMDHPpqWsctdnFLR\x01"[..]),
            "[^\0]{0,12}",
        ),
        0..6,
    );
    let input = (prop::collection::vec(any::<u8>(), 0..48), fields);
    fuzz::run("cstr_error_fields", 4000, input, |(bytes, fields)| {
        if let Some((s, rest)) = cstr_bytes(&bytes) {
            prop_assert!(!s.contains(&0));
            prop_assert_eq!(s.len() + 1 + rest.len(), bytes.len());
            prop_assert_eq!(bytes.get(s.len()), Some(&0));
        } else {
            prop_assert!(!bytes.contains(&0));
        }
        if let Some((s, _)) = cstr(&bytes) {
            prop_assert_eq!(
                s.as_bytes(),
                cstr_bytes(&bytes).map(|(b, _)| b).unwrap_or_default()
            );
        }
        let _ = error_fields(&bytes);
        // Fields as a server sends them decode to what was sent (the last of each kind).
        let mut encoded = Vec::new();
        let mut want = ErrorFields::default();
        for (kind, value) in &fields {
            encoded.push(*kind);
            encoded.extend_from_slice(value.as_bytes());
            encoded.push(0);
            match kind {
                b'S' => want.severity = value.clone(),
                b'C' => want.code = value.clone(),
                b'M' => want.message = value.clone(),
                _ => {}
            }
        }
        encoded.push(0);
        prop_assert_eq!(error_fields(&encoded), want);
        // And pgsluice's own errors decode to what it meant.
        if let [(_, a), (_, b), (_, c), ..] = fields.as_slice() {
            let mut buf = BytesMut::new();
            build::error(&mut buf, a, b, c);
            let h = header(&buf, usize::MAX).ok().flatten();
            prop_assert_eq!(h.map(|h| h.frame_len), Some(buf.len()));
            let got = error_fields(body(&buf));
            prop_assert_eq!(
                (got.severity, got.code, got.message),
                (a.clone(), b.clone(), c.clone())
            );
        }
        Ok(())
    });
}

/// A parameter list with distinct names reads back as itself.
#[test]
fn fuzz_startup_params_round_trip() {
    let params = prop::collection::btree_map("[a-z_]{1,10}", "[^\0]{0,10}", 0..6);
    fuzz::run(
        "startup_params",
        2000,
        params,
        |params: BTreeMap<String, String>| {
            let mut p = vec![0; 4];
            p.extend(196_608u32.to_be_bytes());
            for (k, v) in &params {
                p.extend_from_slice(k.as_bytes());
                p.push(0);
                p.extend_from_slice(v.as_bytes());
                p.push(0);
            }
            p.push(0);
            prop_assert_eq!(startup::parse(&p), Ok(StartupPacket::Startup(params)));
            Ok(())
        },
    );
}
