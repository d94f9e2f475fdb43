//! Cache keys for statement text: tokens with literals replaced by a placeholder of
//! their kind, comments dropped.

use super::lexer::{IDENT_CONT, IDENT_START, Kind, Lexer, SPACE};

/// A cache key for `sql`: its tokens with every literal replaced by a placeholder of its
/// kind (`?` an integer, `?.` another number, `?'` a string, `?$` a parameter) and
/// comments dropped, so that queries differing only in their constants share one entry.
/// `None` when the text has an unterminated quote or comment, or a literal a parser may
/// read otherwise than this lexer does (let the parser judge it).
pub fn normalize(sql: &str) -> Option<String> {
    let mut key = Vec::with_capacity(sql.len());
    // Tokens start and end at ASCII bytes, so the key of UTF-8 text is UTF-8.
    normalize_bytes(sql, &mut key)
        .then(|| String::from_utf8(key).ok())
        .flatten()
}

/// [`normalize`] as bytes into a reused buffer (what the classifier's cache is keyed by);
/// false when there is no key.
///
/// The key of every text is built here, on every statement a routed session sends, so
/// the usual tokens (blanks, words, numbers, punctuation) are read in one loop of its
/// own; anything else (quotes, dollar quotes, comments, `E'...'`, a `.` that may start a
/// number) is the [`Lexer`]'s, from where it starts ([`lexed`]). The key is the same as
/// that of [`Lexer`]'s tokens joined by one blank
/// (`tests::the_fast_key_is_the_lexers_key`).
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
        i += 1;
        let piece = if IDENT_START[c as usize] {
            while b.get(i).is_some_and(|&c| IDENT_CONT[c as usize]) {
                i += 1;
            }
            // `E'...'` is a string.
            let e_string = i == start + 1 && c | 0x20 == b'e' && b.get(i) == Some(&b'\'');
            (!e_string).then(|| b.get(start..i).unwrap_or_default())
        } else if c.is_ascii_digit() {
            while b
                .get(i)
                .is_some_and(|c| matches!(c, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.'))
            {
                i += 1;
            }
            match placeholder(b, start, i) {
                Some(p) => Some(p.as_bytes()),
                None => return false,
            }
        } else if matches!(c, b'\'' | b'"' | b'$' | b'.' | b'-' | b'/') {
            None
        } else {
            b.get(start..i)
        };
        let piece = match piece {
            Some(piece) => piece,
            None => match lexed(sql, start) {
                Lexed::Token(piece, next) => {
                    i = next;
                    piece
                }
                Lexed::End => return true,
                Lexed::NoKey => return false,
            },
        };
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(piece);
    }
}

/// What the [`Lexer`] reads at one place of a text, for its key.
enum Lexed<'a> {
    /// The token's piece of the key, and where the next starts.
    Token(&'a [u8], usize),
    /// Only comments were left.
    End,
    /// The text has no key.
    NoKey,
}

/// The token at byte `start` of `sql` as the [`Lexer`] reads it.
fn lexed(sql: &str, start: usize) -> Lexed<'_> {
    let b = sql.as_bytes();
    let mut lexer = Lexer::at_pos(sql, start);
    let Some(t) = lexer.next() else {
        // A comment running to the end is no comment to a parser: `SELECT 1 /* x` must
        // not share the key of `SELECT 1` (found by the classifier's fuzz target).
        return match lexer.open_comment() {
            true => Lexed::NoKey,
            false => Lexed::End,
        };
    };
    let piece = match t.kind {
        Kind::Literal => placeholder(b, t.start, t.end).map(str::as_bytes),
        Kind::Unterminated => None,
        Kind::Word | Kind::Quoted | Kind::Punct(_) => b.get(t.start..t.end),
    };
    match piece {
        Some(piece) => Lexed::Token(piece, lexer.pos()),
        None => Lexed::NoKey,
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
