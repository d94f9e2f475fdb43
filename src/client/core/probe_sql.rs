//! The text and messages of a read-your-writes probe (see `ryw.rs`), and reading its
//! answer's row: built from fixed parts and the LSN's digits, without `core::fmt`.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::fe;
use crate::router::parse_lsn_bytes;

/// The probe's Query message, sent alone: waits on the replica, in steps of half a
/// millisecond, up to `wait`. Built in one buffer (one allocation), without `core::fmt`.
pub fn probe_frame(min_lsn: u64, wait: Duration) -> Bytes {
    let mut b = BytesMut::with_capacity(400);
    b.put_u8(fe::QUERY);
    b.put_i32(0);
    put_probe_text(&mut b, min_lsn, wait);
    b.put_u8(0);
    set_length(&mut b, 0);
    b.freeze()
}

/// The probe sent ahead of a unit: Parse/Bind/Execute of `BEGIN`, the probe and `COMMIT`,
/// unnamed, with no Sync (the answer comes with the unit's).
pub fn ahead_probe(min_lsn: u64, wait: Duration) -> Bytes {
    let mut b = BytesMut::with_capacity(512);
    put_unnamed_execution(&mut b, |b| b.put_slice(b"BEGIN"));
    put_unnamed_execution(&mut b, |b| put_probe_text(b, min_lsn, wait));
    put_unnamed_execution(&mut b, |b| b.put_slice(b"COMMIT"));
    b.freeze()
}

/// Parse (of the text `text` writes), Bind and Execute of the unnamed statement and portal.
fn put_unnamed_execution(b: &mut BytesMut, text: impl FnOnce(&mut BytesMut)) {
    let start = b.len();
    b.put_u8(fe::PARSE);
    b.put_i32(0);
    b.put_u8(0);
    text(b);
    b.put_u8(0);
    b.put_i16(0);
    set_length(b, start);
    // Bind: portal "", statement "", no parameter formats, no parameters, no result
    // formats (all text).
    b.put_slice(&[fe::BIND, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    // Execute: portal "", all rows.
    b.put_slice(&[fe::EXECUTE, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
}

/// Sets the length of the message starting at `start` (its tag) to the end of `b`.
fn set_length(b: &mut BytesMut, start: usize) {
    let len = (b.len() - start - 1) as i32;
    if let Some(l) = b.get_mut(start + 1..start + 5) {
        l.copy_from_slice(&len.to_be_bytes());
    }
}

/// The probe's text: the replica's replay LSN, once it reaches `min_lsn` or `wait` has
/// passed (at once for no wait).
fn put_probe_text(b: &mut BytesMut, min_lsn: u64, wait: Duration) {
    let micros = wait.as_micros().min(10_000_000) as u64;
    if micros == 0 {
        b.put_slice(b"SELECT pg_catalog.pg_last_wal_replay_lsn()::text");
    } else {
        b.put_slice(PROBE_HEAD);
        put_hex(b, min_lsn >> 32);
        b.put_u8(b'/');
        put_hex(b, min_lsn & 0xffff_ffff);
        b.put_slice(PROBE_MIDDLE);
        put_decimal(b, micros);
        b.put_slice(PROBE_TAIL);
    }
}

/// The probe's text before the LSN, between the LSN and the wait, and after the wait.
const PROBE_HEAD: &[u8] =
    b"WITH RECURSIVE w(n, lsn) AS (SELECT 0, pg_catalog.pg_last_wal_replay_lsn() \
    UNION ALL SELECT w.n + 1, pg_catalog.pg_last_wal_replay_lsn() \
    FROM w, LATERAL pg_catalog.pg_sleep(0.0005 + 0 * w.n) s WHERE w.lsn < '";
const PROBE_MIDDLE: &[u8] = b"'::pg_lsn AND pg_catalog.clock_timestamp() < \
    pg_catalog.statement_timestamp() + interval '";
const PROBE_TAIL: &[u8] = b" microseconds') SELECT max(w.lsn)::text FROM w";

/// `v` in upper-case hex without leading zeros, as PostgreSQL prints an LSN's halves.
/// Digits are made in a local array and copied once (a `put_u8` per digit checks the
/// buffer's room each time).
fn put_hex(b: &mut BytesMut, v: u64) {
    let mut digits = [0u8; 16];
    let n = ((64 - v.leading_zeros()).div_ceil(4).max(1)) as usize;
    for (i, d) in digits.iter_mut().take(n).enumerate() {
        let x = ((v >> ((n - 1 - i) * 4)) & 0xf) as u8;
        *d = if x < 10 { b'0' + x } else { b'A' + x - 10 };
    }
    b.put_slice(digits.get(..n).unwrap_or_default());
}

/// `v` in decimal.
fn put_decimal(b: &mut BytesMut, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || at == 0 {
            break;
        }
    }
    b.put_slice(digits.get(at..).unwrap_or_default());
}

/// The first column of a DataRow body as an LSN (`None` for NULL or a malformed row): a
/// probe's answer, and the write-LSN read after a writing transaction (`chores.rs`).
pub(super) fn first_column_lsn(body: &[u8]) -> Option<u64> {
    let n = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    if n == 0 {
        return None;
    }
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    let v = body.get(6..6 + len)?;
    parse_lsn_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sql_waits_only_when_asked() {
        let text = |f: Bytes| {
            let len = i32::from_be_bytes(f[1..5].try_into().unwrap()) as usize;
            assert_eq!(len + 1, f.len(), "the length covers the frame");
            assert_eq!(f[0], b'Q');
            assert_eq!(f[f.len() - 1], 0);
            String::from_utf8(f[5..f.len() - 1].to_vec()).unwrap()
        };
        assert_eq!(
            text(probe_frame(0x16B3748, Duration::ZERO)),
            "SELECT pg_catalog.pg_last_wal_replay_lsn()::text"
        );
        let sql = text(probe_frame(0x1_016B_3748, Duration::from_millis(5)));
        assert_eq!(
            sql,
            "WITH RECURSIVE w(n, lsn) AS (SELECT 0, pg_catalog.pg_last_wal_replay_lsn() \
             UNION ALL SELECT w.n + 1, pg_catalog.pg_last_wal_replay_lsn() \
             FROM w, LATERAL pg_catalog.pg_sleep(0.0005 + 0 * w.n) s \
             WHERE w.lsn < '1/16B3748'::pg_lsn AND pg_catalog.clock_timestamp() < \
             pg_catalog.statement_timestamp() + interval '5000 microseconds') \
             SELECT max(w.lsn)::text FROM w"
        );
        let sql = text(probe_frame(0xFFFF_FFFF_0000_0000, Duration::from_micros(7)));
        assert!(sql.contains("w.lsn < 'FFFFFFFF/0'::pg_lsn"), "{sql}");
        assert!(sql.contains("interval '7 microseconds'"), "{sql}");
        let sql = text(probe_frame(1, Duration::from_secs(100)));
        assert!(sql.contains("w.lsn < '0/1'::pg_lsn"), "{sql}");
        assert!(sql.contains("interval '10000000 microseconds'"), "{sql}");
    }

    #[test]
    fn the_probe_sent_ahead_is_three_unnamed_executions_in_their_own_transaction() {
        let frames = ahead_probe(0x7D0, Duration::from_millis(5));
        let mut rest = &frames[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let h = crate::protocol::header(rest, 1 << 20).unwrap().unwrap();
            let (frame, tail) = rest.split_at(h.frame_len);
            seen.push((h.tag, frame[5..].to_vec()));
            rest = tail;
        }
        let tags: String = seen.iter().map(|(t, _)| *t as char).collect();
        assert_eq!(
            tags, "PBEPBEPBE",
            "no Sync: the answer waits for the unit's"
        );
        let parse_text = |body: &[u8]| {
            assert_eq!(body[0], 0, "the unnamed statement");
            let end = body[1..].iter().position(|&b| b == 0).unwrap() + 1;
            assert_eq!(&body[end + 1..], &[0, 0], "no parameter types");
            String::from_utf8(body[1..end].to_vec()).unwrap()
        };
        assert_eq!(parse_text(&seen[0].1), "BEGIN");
        assert!(parse_text(&seen[3].1).contains("w.lsn < '0/7D0'::pg_lsn"));
        assert_eq!(parse_text(&seen[6].1), "COMMIT");
        for (tag, body) in &seen {
            match tag {
                b'B' => assert_eq!(body, &[0, 0, 0, 0, 0, 0, 0, 0], "unnamed, text results"),
                b'E' => assert_eq!(body, &[0, 0, 0, 0, 0], "unnamed portal, all rows"),
                _ => {}
            }
        }
    }

    #[test]
    fn numbers_print_as_postgresql_reads_them() {
        let print = |f: fn(&mut BytesMut, u64), v| {
            let mut b = BytesMut::new();
            f(&mut b, v);
            String::from_utf8(b.to_vec()).unwrap()
        };
        for v in [0, 9, 10, 4096, 0xFFFF_FFFF, u64::MAX] {
            assert_eq!(print(put_decimal, v), v.to_string());
            assert_eq!(print(put_hex, v), format!("{v:X}"));
        }
    }

    #[test]
    fn a_probe_row_reads_as_an_lsn() {
        let row = |v: &[u8]| {
            let mut b = vec![0, 1];
            b.extend((v.len() as i32).to_be_bytes());
            b.extend(v);
            b
        };
        assert_eq!(first_column_lsn(&row(b"0/7D0")), Some(2000));
        assert_eq!(first_column_lsn(&row(b"nonsense")), None);
        assert_eq!(first_column_lsn(&[0, 1, 255, 255, 255, 255]), None, "NULL");
        assert_eq!(first_column_lsn(&[0, 1, 0, 0, 0, 9, b'0']), None, "short");
        assert_eq!(first_column_lsn(&[]), None);
    }
}
