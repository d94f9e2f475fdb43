//! The JSON log line: the same line tracing-subscriber's JSON formatter writes
//! (`{"timestamp":…,"level":…,"fields":{…},"target":…}`), written straight into the line
//! buffer instead of through serde. Every client logs a line at login and one at the end;
//! through serde those two cost ~34,000 instructions, a third of a `pgbench -C` connection
//! (~6,000 now, stop 41: the line is put together in a `String` and handed over whole).
//! An event inside a span, or one forwarded from the `log` crate, takes the library's
//! own formatter, which knows spans and `log` metadata.

use std::fmt::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, time};
use tracing_subscriber::registry::LookupSpan;

/// The event format for `log_format = "json"`.
pub struct Json {
    library: format::Format<format::Json, time::SystemTime>,
}

impl Default for Json {
    fn default() -> Json {
        Json {
            library: format::format().json(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let from_log = meta.fields().field("log.target").is_some();
        if from_log || event.parent().is_some() || ctx.lookup_current().is_some() {
            return self.library.format_event(ctx, w, event);
        }
        // The line is put together in a buffer of this thread's (its writes inline, where
        // each piece written through `Writer` was a call through a pointer: ~1,800 of the
        // ~3,700 instructions of a client's login line, stop 41), then handed over whole.
        // An event logged while a line is being written (tracing drops those itself)
        // would find the buffer taken and use one of its own.
        LINE.with(|cell| {
            let mut own = String::new();
            let mut kept = cell.try_borrow_mut();
            let line = match &mut kept {
                Ok(kept) => &mut **kept,
                Err(_) => &mut own,
            };
            line.clear();
            let r = write_line(line, meta, event).and_then(|()| w.write_str(line));
            if line.capacity() > LINE_KEPT {
                // A long line (a slow query's text) does not stay this thread's size.
                *line = String::new();
            }
            r
        })
    }
}

/// The most of a line buffer's allocation kept from one line to the next.
const LINE_KEPT: usize = 4096;

thread_local! {
    /// The line being written (its allocation kept from line to line, up to `LINE_KEPT`).
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// An event's whole JSON line, appended to `out`.
fn write_line(out: &mut String, meta: &tracing::Metadata<'_>, event: &Event<'_>) -> fmt::Result {
    out.push_str("{\"timestamp\":\"");
    write_timestamp(out, SystemTime::now());
    out.push_str("\",\"level\":\"");
    out.push_str(meta.level().as_str());
    out.push_str("\",\"fields\":{");
    let mut fields = Fields {
        out: &mut *out,
        first: true,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    out.push_str("},\"target\":");
    string(out, meta.target());
    out.push_str("}\n");
    Ok(())
}

/// Writes an event's fields as JSON object members.
struct Fields<'a> {
    out: &'a mut String,
    first: bool,
    /// A `Debug` value's own formatting error, passed on as the line's.
    result: fmt::Result,
}

impl Fields<'_> {
    /// Writes `"name":` (with the comma before it when needed): the value follows.
    fn member(&mut self, field: &Field) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        string(self.out, field.name());
        self.out.push(':');
        self.out
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let out = self.member(field);
        out.push('"');
        let r = write!(Escaped(out), "{value:?}");
        out.push('"');
        if self.result.is_ok() {
            self.result = r;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        string(self.member(field), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        Digits::of(value, false).push_to(self.member(field));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        Digits::of(value.unsigned_abs(), value < 0).push_to(self.member(field));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field)
            .push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json: a number, or null when not finite.
        let out = self.member(field);
        if value.is_finite() {
            let _ = write!(out, "{value:?}");
        } else {
            out.push_str("null");
        }
    }
}

/// An integer's decimal digits (with its minus sign), written without the formatting
/// machinery (a client's id is in both of its log lines).
struct Digits {
    buf: [u8; 21],
    start: usize,
}

impl Digits {
    fn of(mut v: u64, negative: bool) -> Digits {
        let mut d = Digits {
            buf: [0; 21],
            start: 21,
        };
        loop {
            d.start -= 1;
            if let Some(slot) = d.buf.get_mut(d.start) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            d.start -= 1;
            if let Some(slot) = d.buf.get_mut(d.start) {
                *slot = b'-';
            }
        }
        d
    }

    /// Appends the digits (ASCII, each its own `char`).
    fn push_to(&self, out: &mut String) {
        let digits = self.buf.get(self.start..).unwrap_or_default();
        out.extend(digits.iter().map(|&b| char::from(b)));
    }
}

/// A JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    escape(out, s);
    out.push('"');
}

/// The inside of a JSON string for `s`, as serde_json escapes it: `"`, `\` and the
/// control characters; everything else as is.
fn escape(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(at) = first_special(rest.as_bytes()) {
        let (plain, tail) = rest.split_at(at);
        out.push_str(plain);
        let mut chars = tail.chars();
        let Some(c) = chars.next() else { break };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// What is written through it goes into a JSON string, escaped (a `Debug` value's text).
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s);
        Ok(())
    }
}

/// Whether JSON escapes `b` inside a string: `"`, `\` and the control characters.
fn special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where the first byte [`special`] finds is, eight bytes per step: a connection's two
/// log lines scanned byte by byte cost ~2,500 instructions (stop 40), and their text
/// rarely has anything to escape.
fn first_special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Non-zero if some byte of `x` is below `n` (for n <= 128).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut at = 0;
    for chunk in s.chunks_exact(8) {
        let x = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        if below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0 {
            break;
        }
        at += 8;
    }
    let tail = s.get(at..)?;
    tail.iter().position(|&b| special(b)).map(|p| at + p)
}

/// `2026-12-04T02:57:50.841573Z`: UTC, microseconds, as tracing-subscriber writes it.
fn write_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let t = secs % 86_400;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let put = |b: &mut [u8; 27], at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(slot) = b.get_mut(i) {
                *slot = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(&mut b, 0, 4, year);
    put(&mut b, 5, 2, month);
    put(&mut b, 8, 2, day);
    put(&mut b, 11, 2, t / 3600);
    put(&mut b, 14, 2, t / 60 % 60);
    put(&mut b, 17, 2, t % 60);
    put(&mut b, 20, 6, u64::from(since.subsec_micros()));
    // Only ASCII digits and punctuation were written.
    out.extend(b.iter().map(|&c| char::from(c)));
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's algorithm,
/// for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn events() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Key {
            database: String,
            node: usize,
        }
        let key = Key {
            database: "a\"b\\c\u{1b}[31m\té".into(),
            node: 3,
        };
        let reason = "client closed the connection\n";
        tracing::info!(
            user = "u\"1",
            database = "app",
            client = 7u32,
            "client logged in"
        );
        tracing::warn!(client = 7, pool = ?key, ok = true, f = 1.5, nan = f64::NAN, n = -3i64, "gone: {reason}");
        tracing::error!("plain message with \u{0} and \u{7f} and 日本");
        tracing::info!(x = %"display \"quoted\"", big = 1u128 << 100, "fields only");
        tracing::info!(
            zero = 0u64,
            max = u64::MAX,
            min = i64::MIN,
            nine = 9i64,
            "integers"
        );
    }

    /// The lines `Json` writes for what `f` logs.
    fn lines_of(f: impl FnOnce()) -> String {
        let ours = Buf::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .event_format(Json::default())
            .with_writer(ours.clone())
            .finish();
        tracing::subscriber::with_default(sub, f);
        String::from_utf8(ours.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines are the library's JSON lines, byte for byte but for the timestamp.
    #[test]
    fn same_lines_as_the_library() {
        let ours = lines_of(events);
        let theirs = Buf::default();
        let sub = tracing_subscriber::fmt()
            .json()
            .with_writer(theirs.clone())
            .finish();
        tracing::subscriber::with_default(sub, events);
        let theirs = String::from_utf8(theirs.0.lock().unwrap().clone()).unwrap();
        let strip = |text: &str| {
            text.lines()
                .map(|l| {
                    let head = "{\"timestamp\":\"";
                    assert!(l.starts_with(head), "{l}");
                    let ts = l.get(head.len()..head.len() + 27).unwrap();
                    assert!(ts.ends_with('Z') && ts.get(4..5) == Some("-"), "{l}");
                    l.replace(ts, "TS")
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (strip(&ours), strip(&theirs));
        assert_eq!(a.len(), 5);
        assert_eq!(a, b);
    }

    /// A value that logs while its line is being written: tracing drops the inner event
    /// (a subscriber is not entered twice), and the outer line is whole.
    #[test]
    fn a_value_that_logs_while_formatted() {
        struct Noisy;
        impl fmt::Debug for Noisy {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                tracing::info!(depth = 2u64, "inner");
                f.write_str("noisy \"value\"")
            }
        }
        let text = lines_of(|| tracing::info!(v = ?Noisy, "outer"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("{\"timestamp\":\"") && l.ends_with('}'))
        );
        assert!(
            lines
                .last()
                .unwrap()
                .contains(r#""fields":{"message":"outer","v":"noisy \"value\""}"#),
            "{text}"
        );
    }

    /// Inside a span the library's formatter writes the line (with the span).
    #[test]
    fn spans_go_to_the_library() {
        let text = lines_of(|| {
            let span = tracing::info_span!("work", id = 5);
            let _g = span.enter();
            tracing::info!("inside");
        });
        assert!(text.contains("\"span\":{"), "{text}");
    }

    /// The eight-byte scan finds what a byte-by-byte scan finds.
    #[test]
    fn fuzz_first_special_is_the_first_byte_to_escape() {
        use proptest::prelude::*;
        let byte = prop_oneof![
            any::<u8>(),
            proptest::sample::select(vec![b'"', b'\\', b'\n', 0u8, 0x1f, 0x20, b'a']),
        ];
        let bytes = proptest::collection::vec(byte, 0..40);
        crate::fuzz::run("logfmt_first_special", 4000, bytes, |s| {
            prop_assert_eq!(first_special(&s), s.iter().position(|&b| special(b)));
            Ok(())
        });
    }

    #[test]
    fn timestamps() {
        let at = |secs: u64, micros: u64| {
            let mut s = String::new();
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            write_timestamp(&mut s, t);
            s
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century year), 1900-free range.
        assert_eq!(at(951_782_400 + 3_661, 7), "2000-02-29T01:01:01.000007Z");
        assert_eq!(at(1_796_353_070, 841_573), "2026-12-04T02:57:50.841573Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }
}
