//! The slow query log: a query whose wait for a server plus time on the server reaches
//! `general.slow_query_threshold` is logged once, its text truncated and normalised
//! (string and number literals replaced by `?`), with the node, the wait and the time on
//! the server. At most [`MAX_PER_SECOND`] lines a second per worker: a pool that falls
//! behind makes most of its queries slow at once, and a line for each would add a write
//! per query to the overload; the lines left out are counted in the next one.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Slow query lines logged per second at most, per worker.
pub const MAX_PER_SECOND: u32 = 20;

/// Longest query text kept (bytes, before normalisation).
pub const MAX_TEXT: usize = 200;

/// What a session keeps to log a slow query: the text of the statement it last sent.
#[derive(Debug)]
pub struct SlowLog {
    /// The threshold, in microseconds.
    pub threshold_us: u64,
    /// The first [`MAX_TEXT`] bytes of the last Query's or Parse's text.
    pub text: Vec<u8>,
    /// The text was longer than what is kept.
    pub truncated: bool,
    /// The statement name of the last Bind (mapped-statement mode only), whose text is
    /// looked up when the query turns out slow.
    pub bind_name: Vec<u8>,
}

impl SlowLog {
    pub fn new(threshold: Duration) -> SlowLog {
        SlowLog {
            threshold_us: threshold.as_micros() as u64,
            text: Vec::new(),
            truncated: false,
            bind_name: Vec::new(),
        }
    }

    /// Keeps the start of the text `sql` (without its NUL). The buffer is kept between
    /// queries (at most [`MAX_TEXT`] bytes): allocating it per query cost more than the
    /// rest of the statistics together (measured with callgrind).
    #[inline]
    pub fn keep_text(&mut self, sql: &[u8]) {
        let n = sql.len().min(MAX_TEXT);
        self.text.clear();
        self.text.extend_from_slice(&sql[..n]);
        self.truncated = sql.len() > MAX_TEXT;
        self.bind_name.clear();
    }

    pub fn keep_bind_name(&mut self, name: &[u8]) {
        self.bind_name.clear();
        self.bind_name
            .extend_from_slice(&name[..name.len().min(MAX_TEXT)]);
    }
}

/// One slow query, ready to log.
pub struct SlowQuery<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub client: u32,
    pub node: usize,
    pub wait: Duration,
    pub server: Duration,
    pub text: &'a [u8],
    pub truncated: bool,
}

impl SlowQuery<'_> {
    pub fn log(&self) {
        let Some(left_out) = BUDGET.with(|b| {
            let mut budget = b.get();
            let admitted = budget.admit(Instant::now());
            b.set(budget);
            admitted
        }) else {
            return;
        };
        if left_out > 0 {
            tracing::warn!(
                left_out,
                "slow query log: {left_out} slow queries left out (more than {MAX_PER_SECOND} a second)"
            );
        }
        let mut query = normalise(&String::from_utf8_lossy(self.text));
        if self.truncated {
            query.push('…');
        }
        tracing::warn!(
            client = self.client,
            database = self.database,
            user = self.user,
            node = self.node,
            wait_ms = ms(self.wait),
            server_ms = ms(self.server),
            total_ms = ms(self.wait + self.server),
            query = %query,
            "slow query"
        );
    }
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget::new()) };
}

/// The slow query lines of the current second.
#[derive(Clone, Copy)]
struct Budget {
    /// When the current second began (`None` before the first line).
    since: Option<Instant>,
    /// Lines logged in it.
    logged: u32,
    /// Lines left out since the last one logged.
    left_out: u64,
}

impl Budget {
    const fn new() -> Budget {
        Budget {
            since: None,
            logged: 0,
            left_out: 0,
        }
    }

    /// Whether a slow query at `now` is logged: `Some(n)` with the lines left out before
    /// it (to be reported first), `None` when this one is left out.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let new_second = self
            .since
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
        if new_second {
            self.since = Some(now);
            self.logged = 0;
        }
        if self.logged >= MAX_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Replaces string literals (`'...'`, `E'...'`, `$$...$$`, `$tag$...$tag$`) and numbers by
/// `?`, drops comments and folds whitespace. `$1` parameters and quoted identifiers stay.
/// Never panics; an unterminated literal becomes `?` too.
pub fn normalise(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut space = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            space = !out.is_empty();
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |n| i + n);
            space = !out.is_empty();
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i = skip_block_comment(b, i);
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        let prev_ident = out.as_bytes().last().is_some_and(|&p| ident(p));
        match c {
            b'\'' => {
                // E'...' takes backslash escapes; the E goes with the literal.
                let escapes = matches!(out.as_bytes().last(), Some(b'e' | b'E'))
                    && !out.as_bytes()[..out.len() - 1]
                        .last()
                        .is_some_and(|&p| ident(p));
                if escapes {
                    out.pop();
                }
                i = skip_quoted(b, i + 1, escapes);
                out.push('?');
            }
            b'"' => {
                let end = skip_quoted(b, i + 1, false);
                out.push_str(sql.get(i..end).unwrap_or_default());
                i = end;
            }
            b'$' if !prev_ident => match dollar_end(b, i) {
                Some(end) => {
                    out.push('?');
                    i = end;
                }
                None => {
                    let end = i + 1 + b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                    out.push_str(sql.get(i..end).unwrap_or_default());
                    i = end;
                }
            },
            b'0'..=b'9' if !prev_ident => {
                i += b[i..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'.' || **x == b'_')
                    .count();
                out.push('?');
            }
            b'.' if !prev_ident && b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1 + b[i + 1..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'.' || **x == b'_')
                    .count();
                out.push('?');
            }
            _ => {
                // Copy one whole character.
                let len = sql
                    .get(i..)
                    .and_then(|r| r.chars().next())
                    .map_or(1, char::len_utf8);
                out.push_str(sql.get(i..i + len).unwrap_or_default());
                i += len;
            }
        }
    }
    out
}

/// Index past the closing quote (or the end), from just after the opening one.
fn skip_quoted(b: &[u8], mut i: usize, backslash: bool) -> usize {
    let q = b[i - 1];
    while i < b.len() {
        let c = b[i];
        i += 1;
        if backslash && c == b'\\' {
            i += 1;
        } else if c == q {
            if b.get(i) != Some(&q) {
                return i;
            }
            i += 1;
        }
    }
    b.len()
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0u32;
    while i < b.len() {
        match (b[i], b.get(i + 1).copied()) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// At `$`: the end of a `$tag$...$tag$` string (or of the text, unterminated), or `None`
/// when this is not a dollar quote (a `$1` parameter, a lone `$`).
fn dollar_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while b
        .get(j)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80)
    {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[start..=j];
    let body = start + tag.len();
    let found = b[body..].windows(tag.len()).position(|w| w == tag);
    Some(found.map_or(b.len(), |p| body + p + tag.len()))
}

#[cfg(test)]
mod tests {
    use super::{Budget, MAX_PER_SECOND, normalise};
    use std::time::{Duration, Instant};

    /// A burst of slow queries logs [`MAX_PER_SECOND`] lines a second; the first line of
    /// a later second reports how many were left out.
    #[test]
    fn a_burst_of_slow_queries_is_logged_at_a_bounded_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new();
        let admitted: Vec<_> = (0..MAX_PER_SECOND + 5)
            .map(|i| b.admit(t0 + Duration::from_millis(u64::from(i))))
            .collect();
        assert!(
            admitted[..MAX_PER_SECOND as usize]
                .iter()
                .all(|a| *a == Some(0))
        );
        assert!(
            admitted[MAX_PER_SECOND as usize..]
                .iter()
                .all(Option::is_none)
        );
        // Still the same second: left out too.
        assert_eq!(b.admit(t0 + Duration::from_millis(999)), None);
        // The next second: logged, after a count of the 6 left out.
        assert_eq!(b.admit(t0 + Duration::from_millis(1_000)), Some(6));
        assert_eq!(b.admit(t0 + Duration::from_millis(1_001)), Some(0));
        // A quiet minute later, nothing is left over.
        assert_eq!(b.admit(t0 + Duration::from_secs(60)), Some(0));
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            normalise("SELECT * FROM t WHERE a = 'x''y' AND b = 42 AND c = 1.5e3"),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ?"
        );
        assert_eq!(
            normalise("select E'a\\'b', $$x$$, $q$y$q$"),
            "select ?, ?, ?"
        );
        assert_eq!(normalise("SELECT pg_sleep(0.2)"), "SELECT pg_sleep(?)");
        assert_eq!(normalise("SELECT .5"), "SELECT ?");
    }

    #[test]
    fn identifiers_parameters_and_comments() {
        assert_eq!(
            normalise("SELECT \"col 1\", t1.x2 FROM t1 WHERE id = $1 -- hi\n  /* c */ LIMIT 3"),
            "SELECT \"col 1\", t1.x2 FROM t1 WHERE id = $1 LIMIT ?"
        );
        assert_eq!(normalise("  SELECT\n\t1  "), "SELECT ?");
        assert_eq!(normalise("se'unterminated"), "se?");
        assert_eq!(normalise("SELECT 'é', 'ü' || ñ"), "SELECT ?, ? || ñ");
        assert_eq!(normalise("/* unterminated"), "");
        assert_eq!(normalise("$"), "$");
    }
}
