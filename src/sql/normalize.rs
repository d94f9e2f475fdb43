//! Cache keys for statement text: tokens with literals replaced by a placeholder of
//! their kind, comments dropped.

use super::lexer::{IDENT_CONT, IDENT_START, Kind, Lexer, SPACE};

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
    let mut key = std::mem::take(out).into_bytes();
    let ok = normalize_bytes(sql, &mut key);
    // Tokens start and end at ASCII bytes, so the key of UTF-8 text is UTF-8.
    match String::from_utf8(key) {
        Ok(key) => {
            *out = key;
            ok
        }
        Err(_) => false,
    }
}

/// [`normalize`] as bytes into a reused buffer (what the classifier's cache is keyed by);
/// false when there is no key.
///
/// The key of every text is built here, on every statement a routed session sends, so
/// the usual tokens (blanks, words, numbers, punctuation) are read in one loop of its
/// own; anything else (quotes, dollar quotes, comments, `E'...'`, a `.` that may start a
/// number) is the [`Lexer`]'s, from where it starts. The key is the same as that of
/// [`Lexer`]'s tokens joined by one blank (`tests::the_fast_key_is_the_lexers_key`).
pub fn normalize_bytes(sql: &str, out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(sql.len());
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while b.get(i).is_some_and(|&c| SPACE[c as usize]) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return true;
        };
        let start = i;
        let simple = if IDENT_START[c as usize] {
            i += 1;
            while b.get(i).is_some_and(|&c| IDENT_CONT[c as usize]) {
                i += 1;
            }
            // `E'...'` is a string.
            !(i == start + 1 && c | 0x20 == b'e' && b.get(i) == Some(&b'\''))
        } else if c.is_ascii_digit() {
            i += 1;
            while b
                .get(i)
                .is_some_and(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.'))
            {
                i += 1;
            }
            if !out.is_empty() {
                out.push(b' ');
            }
            match placeholder(b, start, i) {
                Some(p) => out.extend_from_slice(p.as_bytes()),
                None => return false,
            }
            continue;
        } else if matches!(c, b'\'' | b'"' | b'$' | b'.' | b'-' | b'/') {
            false
        } else {
            i += 1;
            true
        };
        if simple {
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(b.get(start..i).unwrap_or_default());
            continue;
        }
        let mut lexer = Lexer::at_pos(sql, start);
        let Some(t) = lexer.next() else {
            // Only a comment was left; one running to the end is no comment to a
            // parser: `SELECT 1 /* x` must not share the key of `SELECT 1` (found by
            // the classifier's fuzz target).
            return !lexer.open_comment();
        };
        if !out.is_empty() {
            out.push(b' ');
        }
        match t.kind {
            Kind::Punct(c) => out.push(c),
            Kind::Literal => match placeholder(b, t.start, t.end) {
                Some(p) => out.extend_from_slice(p.as_bytes()),
                None => return false,
            },
            Kind::Unterminated => return false,
            Kind::Word | Kind::Quoted => match b.get(t.start..t.end) {
                Some(piece) => out.extend_from_slice(piece),
                None => return false,
            },
        }
        i = lexer.pos();
    }
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
    use super::super::lexer::{Kind, Lexer};
    use super::{normalize, normalize_bytes, placeholder};

    /// The key as the [`Lexer`]'s tokens give it, joined by one blank.
    fn lexers_key(sql: &str) -> Option<Vec<u8>> {
        let b = sql.as_bytes();
        let mut out = Vec::new();
        let mut lexer = Lexer::new(sql);
        for t in lexer.by_ref() {
            if !out.is_empty() {
                out.push(b' ');
            }
            match t.kind {
                Kind::Literal => out.extend_from_slice(placeholder(b, t.start, t.end)?.as_bytes()),
                Kind::Unterminated => return None,
                _ => out.extend_from_slice(b.get(t.start..t.end)?),
            }
        }
        (!lexer.open_comment()).then_some(out)
    }

    fn fast_key(sql: &str) -> Option<Vec<u8>> {
        let mut out = b"left over".to_vec();
        normalize_bytes(sql, &mut out).then_some(out)
    }

    #[test]
    fn the_fast_key_is_the_lexers_key() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
            "UPDATE pgbench_accounts SET abalance = abalance + -2719 WHERE aid = 4711;",
            "select e'x' , E'y\\'z', e, ee'q', 1.5e3, .5, a.b, $1, $$d$$, $t$x$t$, \"Q\"\"\"",
            "a-b - -- c\n/* d /* e */ */ f/g",
            "SELECT 1 /* open",
            "SELECT 'open",
            "x -- trailing",
            "",
            "   ",
            "1abc",
            "é = 'ü'",
        ] {
            assert_eq!(fast_key(sql), lexers_key(sql), "{sql}");
        }
    }

    #[test]
    fn fuzz_the_fast_key_is_the_lexers_key() {
        crate::fuzz::run("sql_fast_key", 6000, crate::fuzz::sql_text(), |sql| {
            proptest::prop_assert_eq!(fast_key(&sql), lexers_key(&sql), "{}", sql);
            Ok(())
        });
    }

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
