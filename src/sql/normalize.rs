//! Cache keys for statement text: tokens with literals replaced by a placeholder of
//! their kind, comments dropped.

use super::lexer::{IDENT_CONT, Kind, Lexer};

/// A cache key for `sql`: its tokens with every literal replaced by a placeholder of its
/// kind (`?` an integer, `?.` another number, `?'` a string, `?$` a parameter) and
/// comments dropped, so that queries differing only in their constants share one entry.
/// `None` when the text has an unterminated quote or comment, or a literal a parser may
/// read otherwise than this lexer does (let the parser judge it).
pub fn normalize(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    normalize_into(sql, &mut out).then_some(out)
}

/// [`normalize`] into a reused buffer; false when there is no key.
pub fn normalize_into(sql: &str, out: &mut String) -> bool {
    out.clear();
    let b = sql.as_bytes();
    let mut lexer = Lexer::new(sql);
    for t in lexer.by_ref() {
        let piece = match t.kind {
            Kind::Literal => match placeholder(b, t.start, t.end) {
                Some(p) => p,
                None => return false,
            },
            Kind::Unterminated => return false,
            // A span off a character boundary would be a lexer bug: no key rather than a
            // key shared with another text.
            _ => match sql.get(t.start..t.end) {
                Some(piece) => piece,
                None => return false,
            },
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    // An unterminated comment is no comment to a parser: `SELECT 1 /* x` must not share
    // the key of `SELECT 1` (found by the classifier's fuzz target).
    !lexer.open_comment()
}

/// The placeholder of the literal at `b[start..end]`, when it reads as one constant of
/// that kind to any SQL parser: not run into a neighbouring token (`'a'b`, `$1x`,
/// `X'1f'`), and a number of the usual shape (`12`, `1.5`, `.5`, `1e3`; not `1abc` or
/// `1.2.3`). Texts sharing a key must parse alike: the classifier's fuzz target found
/// `... = 'x'p` answered from the entry of `... = $1p`, and `numeric('x', 2)` from that
/// of `numeric(0, 2)`, though sqlparser reads neither.
fn placeholder(b: &[u8], start: usize, end: usize) -> Option<&'static str> {
    let glued = |c: &u8| IDENT_CONT[*c as usize] || matches!(c, b'\'' | b'"' | b'.');
    let before = start.checked_sub(1).and_then(|i| b.get(i));
    if b.get(end).is_some_and(glued) || before.is_some_and(glued) {
        return None;
    }
    match b.get(start..end)? {
        t @ [b'0'..=b'9' | b'.', ..] => number(t),
        [b'$', b'0'..=b'9', ..] => Some("?$"),
        _ => Some("?'"),
    }
}

/// `?` for digits, `?.` for `digits [. digits] [e digits]` (digits on at least one side
/// of the point), `None` for anything else.
fn number(t: &[u8]) -> Option<&'static str> {
    let digits = |from: usize| {
        t.get(from..)
            .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let int = digits(0);
    let mut i = int;
    if t.get(i) == Some(&b'.') {
        i += 1;
    }
    let frac = digits(i);
    i += frac;
    if int + frac == 0 {
        return None;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        let exp = digits(i + 1);
        if exp == 0 {
            return None;
        }
        i += 1 + exp;
    }
    match i == t.len() {
        true if i == int => Some("?"),
        true => Some("?."),
        false => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn literals_become_placeholders_when_they_read_alike() {
        assert_eq!(
            normalize("SELECT * FROM t WHERE a = 1 AND b = 'x' AND c = $1 -- note"),
            Some("SELECT * FROM t WHERE a = ? AND b = ?' AND c = ?$".into())
        );
        assert_eq!(
            normalize("SELECT .5, 2., 1.5e3, $$x$$, E'y'"),
            Some("SELECT ?. , ?. , ?. , ?' , ?'".into())
        );
        assert_eq!(normalize("SELECT 'a''b', 42"), normalize("SELECT 'c', 7"));
        // Literals run into the next token, or of an odd shape: no key.
        for sql in [
            "SELECT * FROM t WHERE a = 'x'p",
            "SELECT * FROM t WHERE a = $1p",
            "SELECT X'1f'",
            "SELECT 1abc",
            "SELECT 1.2.3",
            "SELECT 1e",
            "SELECT 'a''b'c",
            "SELECT $$a$$b",
            "SELECT 1 /* open",
        ] {
            assert_eq!(normalize(sql), None, "{sql}");
        }
    }
}
