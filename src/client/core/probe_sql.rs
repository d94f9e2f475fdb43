//! The text and messages of a read-your-writes probe (see `ryw.rs`), and reading its
//! answer's row: built from fixed parts and the LSN's digits, without `core::fmt`.

use std::sync::LazyLock;
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
    let micros = wait_micros(wait);
    if micros == 0 {
        b.put_slice(PROBE_AT_ONCE);
    } else {
        b.put_slice(PROBE_HEAD);
        b.put_u8(b'\'');
        put_lsn(&mut b, min_lsn);
        b.put_u8(b'\'');
        b.put_slice(PROBE_MIDDLE);
        b.put_slice(b"interval '");
        put_decimal(&mut b, micros);
        b.put_slice(b" microseconds'");
        b.put_slice(PROBE_TAIL);
    }
    b.put_u8(0);
    set_length(&mut b, 0);
    b.freeze()
}

/// The id under which a replica connection's record ([`ServerStatements`]) lists the probe
/// that waits once it is prepared there, as [`PROBE_NAME`]: pgsluice's statements and the
/// probe share the connection's `max_prepared_statements`, its eviction and its resets.
/// The registry numbers client statements from 1 and never reaches it.
///
/// [`ServerStatements`]: crate::server::ServerStatements
pub const PROBE_ID: u64 = u64::MAX;
/// The probe's server-side name: what the registry would name [`PROBE_ID`].
pub const PROBE_NAME: &str = "sluice_18446744073709551615";

/// How the probe sent ahead names its statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStatement {
    /// The probe that asks once, parsed as the unnamed statement each time (cheap to
    /// plan).
    AtOnce,
    /// The probe that waits, parsed as the unnamed statement (on a connection whose record
    /// of prepared statements is full).
    Unnamed,
    /// The probe that waits, parsed under [`PROBE_NAME`] here first (a replica plans the
    /// recursive query once per connection instead of for every probe, about 0.1 ms).
    Prepare,
    /// The probe that waits, already prepared on the connection.
    Prepared,
}

/// The probe sent ahead of a unit: Parse/Bind/Execute of `BEGIN`, the probe and `COMMIT`,
/// with no Sync (the answer comes with the unit's). All but the probe's Bind is the same
/// every time and made once: the LSN and the wait go as the Bind's parameters.
pub fn ahead_probe(min_lsn: u64, wait: Duration, how: ProbeStatement) -> Bytes {
    let parts = &*AHEAD_PARTS;
    let mut b = BytesMut::with_capacity(parts.begin.len() + 200 + parts.tail.len());
    b.put_slice(&parts.begin);
    match how {
        ProbeStatement::AtOnce => b.put_slice(&parts.at_once),
        ProbeStatement::Unnamed => b.put_slice(&parts.unnamed),
        ProbeStatement::Prepare => b.put_slice(&parts.prepare),
        ProbeStatement::Prepared => {}
    }
    let start = b.len();
    // Bind: portal "", the statement, no parameter formats (text), the parameters, no
    // result formats (text).
    b.put_slice(&[fe::BIND, 0, 0, 0, 0, 0]);
    if matches!(how, ProbeStatement::Prepare | ProbeStatement::Prepared) {
        b.put_slice(PROBE_NAME.as_bytes());
    }
    b.put_u8(0);
    b.put_i16(0);
    if how == ProbeStatement::AtOnce {
        b.put_i16(0);
    } else {
        b.put_i16(2);
        put_parameter(&mut b, |b| put_lsn(b, min_lsn));
        put_parameter(&mut b, |b| put_decimal(b, wait_micros(wait)));
    }
    b.put_i16(0);
    set_length(&mut b, start);
    b.put_slice(&parts.tail);
    b.freeze()
}

/// The id under which a primary connection's record lists the write-LSN read (see
/// `write_lsn.rs`) once it is prepared there as [`LSN_NAME`], next to the probe's
/// [`PROBE_ID`].
pub const LSN_ID: u64 = u64::MAX - 1;
/// The write-LSN read's server-side name: what the registry would name [`LSN_ID`].
pub const LSN_NAME: &str = "sluice_18446744073709551614";
/// The write-LSN read's text.
pub const LSN_TEXT: &[u8] = b"SELECT pg_catalog.pg_current_wal_insert_lsn()";

/// The write-LSN read as the prepared [`LSN_NAME`]: Bind (no parameters, text result),
/// Execute and Sync, with its Parse first when `prepare`. Made once.
pub fn lsn_read(prepare: bool) -> Bytes {
    static READS: LazyLock<(Bytes, Bytes)> = LazyLock::new(|| {
        let mut run = BytesMut::new();
        let start = run.len();
        run.put_slice(&[fe::BIND, 0, 0, 0, 0, 0]);
        run.put_slice(LSN_NAME.as_bytes());
        run.put_u8(0);
        run.put_slice(&[0, 0, 0, 0, 0, 0]);
        set_length(&mut run, start);
        put_execute(&mut run);
        run.put_slice(&[fe::SYNC, 0, 0, 0, 4]);
        let mut first = BytesMut::new();
        put_parse(&mut first, LSN_NAME, |b| b.put_slice(LSN_TEXT));
        first.put_slice(&run);
        (first.freeze(), run.freeze())
    });
    if prepare {
        READS.0.clone()
    } else {
        READS.1.clone()
    }
}

/// The fixed parts of [`ahead_probe`]: `BEGIN`'s execution; the Parse of the probe that
/// asks once (unnamed) and of the one that waits (unnamed and named); what follows the
/// probe's Bind (its Execute, `COMMIT`'s execution).
struct AheadParts {
    begin: Bytes,
    at_once: Bytes,
    unnamed: Bytes,
    prepare: Bytes,
    tail: Bytes,
}

static AHEAD_PARTS: LazyLock<AheadParts> = LazyLock::new(|| {
    let made = |f: &dyn Fn(&mut BytesMut)| {
        let mut b = BytesMut::new();
        f(&mut b);
        b.freeze()
    };
    AheadParts {
        begin: made(&|b| put_unnamed_execution(b, |b| b.put_slice(b"BEGIN"))),
        at_once: made(&|b| put_parse(b, "", |b| b.put_slice(PROBE_AT_ONCE))),
        unnamed: made(&|b| put_parse(b, "", put_waiting_text)),
        prepare: made(&|b| put_parse(b, PROBE_NAME, put_waiting_text)),
        tail: made(&|b| {
            put_execute(b);
            put_unnamed_execution(b, |b| b.put_slice(b"COMMIT"));
        }),
    }
});

/// The text of the probe that waits, with the LSN to reach (`$1`) and the wait in
/// microseconds (`$2`) as parameters.
fn put_waiting_text(b: &mut BytesMut) {
    for part in [
        PROBE_HEAD,
        b"$1",
        PROBE_MIDDLE,
        b"$2::int8 * interval '1 microsecond'",
        PROBE_TAIL,
    ] {
        b.put_slice(part);
    }
}

/// The wait in microseconds, at most ten seconds.
fn wait_micros(wait: Duration) -> u64 {
    wait.as_micros().min(10_000_000) as u64
}

/// Parse (of the text `text` writes), Bind and Execute of the unnamed statement and portal.
fn put_unnamed_execution(b: &mut BytesMut, text: impl FnOnce(&mut BytesMut)) {
    put_parse(b, "", text);
    // Bind: portal "", statement "", no parameter formats, no parameters, no result
    // formats (all text).
    b.put_slice(&[fe::BIND, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    put_execute(b);
}

/// Parse of statement `name`, no parameter types given.
fn put_parse(b: &mut BytesMut, name: &str, text: impl FnOnce(&mut BytesMut)) {
    let start = b.len();
    b.put_u8(fe::PARSE);
    b.put_i32(0);
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    text(b);
    b.put_u8(0);
    b.put_i16(0);
    set_length(b, start);
}

/// Execute: portal "", all rows.
fn put_execute(b: &mut BytesMut) {
    b.put_slice(&[fe::EXECUTE, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
}

/// One Bind parameter in text format: its length, then what `value` writes.
fn put_parameter(b: &mut BytesMut, value: impl FnOnce(&mut BytesMut)) {
    let at = b.len();
    b.put_i32(0);
    value(b);
    let len = (b.len() - at - 4) as i32;
    if let Some(l) = b.get_mut(at..at + 4) {
        l.copy_from_slice(&len.to_be_bytes());
    }
}

/// Sets the length of the message starting at `start` (its tag) to the end of `b`.
fn set_length(b: &mut BytesMut, start: usize) {
    let len = (b.len() - start - 1) as i32;
    if let Some(l) = b.get_mut(start + 1..start + 5) {
        l.copy_from_slice(&len.to_be_bytes());
    }
}

/// An LSN as PostgreSQL prints it (`1/16B3748`).
fn put_lsn(b: &mut BytesMut, lsn: u64) {
    put_hex(b, lsn >> 32);
    b.put_u8(b'/');
    put_hex(b, lsn & 0xffff_ffff);
}

/// The probe that asks once.
const PROBE_AT_ONCE: &[u8] = b"SELECT pg_catalog.pg_last_wal_replay_lsn()::text";

/// The probe that waits, around the LSN to reach and the deadline: the replica's replay
/// LSN, once it reaches the LSN or the wait has passed.
const PROBE_HEAD: &[u8] =
    b"WITH RECURSIVE w(n, lsn) AS (SELECT 0, pg_catalog.pg_last_wal_replay_lsn() \
    UNION ALL SELECT w.n + 1, pg_catalog.pg_last_wal_replay_lsn() \
    FROM w, LATERAL pg_catalog.pg_sleep(0.0005 + 0 * w.n) s WHERE w.lsn < ";
const PROBE_MIDDLE: &[u8] = b"::pg_lsn AND pg_catalog.clock_timestamp() < \
    pg_catalog.statement_timestamp() + ";
const PROBE_TAIL: &[u8] = b") SELECT max(w.lsn)::text FROM w";

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

    /// The messages of `frames`: (tag, body).
    fn messages(frames: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut rest = frames;
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let h = crate::protocol::header(rest, 1 << 20).unwrap().unwrap();
            let (frame, tail) = rest.split_at(h.frame_len);
            seen.push((h.tag, frame[5..].to_vec()));
            rest = tail;
        }
        seen
    }

    fn tags(seen: &[(u8, Vec<u8>)]) -> String {
        seen.iter().map(|(t, _)| *t as char).collect()
    }

    #[test]
    fn the_probe_sent_ahead_is_three_unnamed_executions_in_their_own_transaction() {
        let seen = messages(&ahead_probe(
            0x7D0,
            Duration::from_millis(5),
            ProbeStatement::Unnamed,
        ));
        let tags = tags(&seen);
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
        let probe = parse_text(&seen[3].1);
        assert!(
            probe.contains("w.lsn < $1::pg_lsn")
                && probe.contains("statement_timestamp() + $2::int8 * interval '1 microsecond')"),
            "{probe}"
        );
        assert_eq!(parse_text(&seen[6].1), "COMMIT");
        let mut bind = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 5];
        bind.extend(b"0/7D0");
        bind.extend([0, 0, 0, 4]);
        bind.extend(b"5000");
        bind.extend([0, 0]);
        assert_eq!(seen[4].1, bind, "the LSN and the wait, as text parameters");
        for (i, (tag, body)) in seen.iter().enumerate() {
            match tag {
                b'B' if i != 4 => {
                    assert_eq!(body, &[0, 0, 0, 0, 0, 0, 0, 0], "unnamed, text results")
                }
                b'E' => assert_eq!(body, &[0, 0, 0, 0, 0], "unnamed portal, all rows"),
                _ => {}
            }
        }
        // A probe that does not wait asks once, with no parameters.
        let once = ahead_probe(0x7D0, Duration::ZERO, ProbeStatement::AtOnce);
        let text = String::from_utf8_lossy(&once);
        assert!(
            text.contains("SELECT pg_catalog.pg_last_wal_replay_lsn()::text"),
            "{text}"
        );
        assert!(!text.contains("0/7D0") && !text.contains("$1"), "{text}");
    }

    #[test]
    fn the_probe_that_waits_is_prepared_once_under_its_name() {
        let wait = Duration::from_millis(5);
        let first = messages(&ahead_probe(0x7D0, wait, ProbeStatement::Prepare));
        assert_eq!(tags(&first), "PBEPBEPBE");
        let mut parse = PROBE_NAME.as_bytes().to_vec();
        parse.push(0);
        assert!(first[3].1.starts_with(&parse), "the probe's Parse names it");
        assert!(String::from_utf8_lossy(&first[3].1).contains("w.lsn < $1::pg_lsn"));
        let then = messages(&ahead_probe(0x7D0, wait, ProbeStatement::Prepared));
        assert_eq!(tags(&then), "PBEBEPBE", "no Parse once prepared");
        assert_eq!(first[4].1, then[3].1, "the same Bind either way");
        let mut bind = vec![0];
        bind.extend(&parse);
        bind.extend([0, 0, 0, 2, 0, 0, 0, 5]);
        bind.extend(b"0/7D0");
        bind.extend([0, 0, 0, 4]);
        bind.extend(b"5000");
        bind.extend([0, 0]);
        assert_eq!(
            then[3].1, bind,
            "portal \"\", the probe, the LSN and the wait"
        );
        assert_eq!(
            PROBE_NAME,
            format!("{}{PROBE_ID}", crate::prepare::SERVER_PREFIX),
            "the name the registry would give its id (an eviction closes it by that name)"
        );
    }

    #[test]
    fn the_write_lsn_read_is_prepared_once_under_its_name() {
        let first = messages(&lsn_read(true));
        assert_eq!(tags(&first), "PBES");
        let mut parse = LSN_NAME.as_bytes().to_vec();
        parse.push(0);
        parse.extend(LSN_TEXT);
        parse.extend([0, 0, 0]);
        assert_eq!(first[0].1, parse, "named, the text, no parameter types");
        let then = messages(&lsn_read(false));
        assert_eq!(tags(&then), "BES");
        let mut bind = vec![0];
        bind.extend(LSN_NAME.as_bytes());
        bind.extend([0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(then[0].1, bind, "portal \"\", the statement, nothing else");
        assert_eq!(first[1..], then[..]);
        assert_eq!(
            LSN_NAME,
            format!("{}{LSN_ID}", crate::prepare::SERVER_PREFIX),
            "the name the registry would give its id"
        );
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
