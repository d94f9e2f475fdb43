//! The slow query log: a query whose wait for a server plus time on the server reaches
//! `general.slow_query_threshold` is logged once, its text truncated and normalised
//! (string and number literals replaced by `?`), with the node, the wait and the time on
//! the server.

use std::time::Duration;

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
    use super::normalise;

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
