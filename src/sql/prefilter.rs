//! Byte-level prefilters: cheap passes over statement text that settle most statements
//! (every plain SELECT) before any UTF-8 check, tokenizing or parsing.

use super::effects::{CALLS, Verb, verb};
use super::lexer::{IDENT_CONT, SPACE};

/// One cheap pass ignoring quotes and comments: false only if `scan` would
/// surely find nothing. Looks at statement starts (text start and after any
/// `;`), at `_` for the function names, and for INTO after a SELECT.
pub fn may_have_effects(b: &[u8]) -> bool {
    let mut select = false;
    if starts_relevant(b, 0, &mut select) {
        return true;
    }
    let mut i = 0;
    while let Some(at) = next_prefilter_byte(b, i) {
        i = at;
        let hit = match b[i] {
            b';' => starts_relevant(b, i + 1, &mut select),
            b'_' => names_call(b, i),
            _ => select && starts_with_kw(&b[i..], b"into"),
        };
        if hit {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether a statement starting at `b[i..]` might have an effect; notes SELECT.
pub(super) fn starts_relevant(b: &[u8], i: usize, select: &mut bool) -> bool {
    let rest = b.get(i..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&c| !SPACE[c as usize])
        .unwrap_or(rest.len());
    let rest = &rest[n..];
    if rest.is_empty() {
        // A `;` ending the text starts nothing.
        return false;
    }
    if rest.starts_with(b"--") || rest.starts_with(b"/*") {
        return true;
    }
    let len = rest
        .iter()
        .position(|&c| !IDENT_CONT[c as usize])
        .unwrap_or(rest.len());
    match verb(&rest[..len]) {
        Verb::Select => *select = true,
        Verb::Other => {}
        _ => return true,
    }
    false
}

/// Whether one of `CALLS` is spelled around the `_` at `b[i]`.
pub(super) fn names_call(b: &[u8], i: usize) -> bool {
    // Every name in `CALLS` starts `pg_` or `set_`; most identifiers with a `_` do not.
    let before = |n: usize, kw: &[u8]| i >= n && eq_kw(&b[i - n..i], kw);
    if !before(2, b"pg") && !before(3, b"set") {
        return false;
    }
    CALLS.iter().any(|&(k, ..)| {
        let first = if k.starts_with("set") { 3 } else { 2 };
        i >= first && starts_with_kw(&b[i - first..], k.as_bytes())
    })
}

/// Position of the next `PREFILTER` byte at or after `from`.
fn next_prefilter_byte(b: &[u8], from: usize) -> Option<usize> {
    let mut base = from;
    // Whole chunks without a branch per byte: most bytes are uninteresting.
    for chunk in b.get(from..)?.chunks_exact(8) {
        if chunk
            .iter()
            .fold(false, |any, &c| any | PREFILTER[c as usize])
        {
            break;
        }
        base += 8;
    }
    let rest = b.get(base..)?;
    rest.iter()
        .position(|&c| PREFILTER[c as usize])
        .map(|n| base + n)
}

static PREFILTER: [bool; 256] = {
    let mut t = [false; 256];
    t[b';' as usize] = true;
    t[b'_' as usize] = true;
    t[b'i' as usize] = true;
    t[b'I' as usize] = true;
    t
};

/// ASCII case-insensitive equality with a lowercase keyword.
pub(super) fn eq_kw(s: &[u8], kw: &[u8]) -> bool {
    s.len() == kw.len() && s.iter().zip(kw).all(|(a, b)| a.to_ascii_lowercase() == *b)
}

pub(super) fn starts_with_kw(hay: &[u8], kw: &[u8]) -> bool {
    hay.get(..kw.len()).is_some_and(|h| eq_kw(h, kw))
}

/// The words written right before a `(` (`now(`, `my_func(`, `t(` of `INSERT INTO t(a)`):
/// the functions a text may call, for a cheap check against an allowlist before anything
/// is parsed. Conservative where it matters: a word followed by a space before its `(` is
/// not seen (that spelling of a call is rare), and words inside literals are seen too.
pub fn call_candidates(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut from = 0;
    std::iter::from_fn(move || {
        loop {
            let rest = b.get(from..)?;
            let at = from + memchr::memchr(b'(', rest)?;
            from = at + 1;
            let before = b.get(..at)?;
            let len = before
                .iter()
                .rev()
                .take_while(|&&c| IDENT_CONT[c as usize])
                .count();
            if len > 0 {
                return before.get(at - len..);
            }
        }
    })
}

/// Whether a text may read a session's sequence values (`currval`, `lastval`): a
/// case-insensitive search, so a name inside a literal or comment counts too.
pub fn reads_sequence_values(b: &[u8]) -> bool {
    sequence_words(b).reads
}

/// Whether a text may read or set a session's sequence values: [`reads_sequence_values`]
/// or [`may_set_sequence_values`], with one search for the names they look for.
pub fn touches_sequence_values(b: &[u8], allowed: impl Fn(&[u8]) -> bool) -> bool {
    let words = sequence_words(b);
    words.reads || may_set(b, words.sets, allowed)
}

/// The sequence functions a text names, in any case, anywhere (literals and comments too).
struct SequenceWords {
    /// `currval` or `lastval`.
    reads: bool,
    /// `nextval` or `setval`.
    sets: bool,
}

fn sequence_words(b: &[u8]) -> SequenceWords {
    let mut words = SequenceWords {
        reads: false,
        sets: false,
    };
    // All four names end in "val": find each `v`, then look before it.
    for v in memchr::memchr2_iter(b'v', b'V', b) {
        if !starts_with_kw(&b[v..], b"val") {
            continue;
        }
        let before = |n: usize, kw: &[u8]| v >= n && eq_kw(&b[v - n..v], kw);
        words.reads |= before(4, b"curr") || before(4, b"last");
        words.sets |= before(4, b"next") || before(3, b"set");
        if words.reads && words.sets {
            break;
        }
    }
    words
}

/// Whether running a text may set a session's sequence values: anything but one plain
/// `SELECT`/`VALUES`/`TABLE`/`SHOW` whose every call is of an allowed function (a write may
/// fire a default or a trigger that calls `nextval`). `allowed` says whether a function
/// named by a word is allowed; `nextval` and `setval` never are.
pub fn may_set_sequence_values(b: &[u8], allowed: impl Fn(&[u8]) -> bool) -> bool {
    may_set(b, sequence_words(b).sets, allowed)
}

/// [`may_set_sequence_values`], given whether the text names `nextval` or `setval`.
fn may_set(b: &[u8], names_setter: bool, allowed: impl Fn(&[u8]) -> bool) -> bool {
    let lead = b
        .iter()
        .position(|&c| !SPACE[c as usize])
        .unwrap_or(b.len());
    let rest = &b[lead..];
    let len = rest
        .iter()
        .position(|&c| !IDENT_CONT[c as usize])
        .unwrap_or(rest.len());
    let word = &rest[..len];
    let plain_read = [&b"select"[..], b"values", b"table", b"show"]
        .iter()
        .any(|kw| eq_kw(word, kw));
    if !plain_read || names_setter {
        return true;
    }
    // A text with a second statement is not looked into; a `;` ending the text (as
    // pgbench and many drivers send it) starts none.
    let end = b
        .iter()
        .rposition(|&c| c != b';' && !SPACE[c as usize])
        .map_or(0, |n| n + 1);
    if memchr::memchr(b';', &b[..end]).is_some() {
        return true;
    }
    call_candidates(b).any(|w| !allowed(w))
}

#[cfg(test)]
mod sequence_tests {
    use super::*;

    fn sets(sql: &str) -> bool {
        may_set_sequence_values(sql.as_bytes(), |w| {
            [&b"count"[..], b"currval", b"lastval", b"now"]
                .iter()
                .any(|k| eq_kw(w, k))
        })
    }

    #[test]
    fn only_plain_reads_of_allowed_functions_cannot_set_sequence_values() {
        for sql in [
            "SELECT 1",
            "  select count(*) from t",
            "SELECT currval('s')",
            "VALUES (1)",
            "SHOW search_path",
            "table t",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
            "SELECT 1 ;\n ; ",
        ] {
            assert!(!sets(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "SELECT nextval('s')",
            "SELECT NEXTVAL('s')",
            "SELECT setval('s', 5)",
            "SELECT my_func()",
            "SELECT 1; INSERT INTO t DEFAULT VALUES",
            "SELECT 1; INSERT INTO t DEFAULT VALUES;",
            "SELECT ';' ;",
            "SELECT nextval('s');",
            "WITH x AS (INSERT INTO t DEFAULT VALUES RETURNING *) SELECT * FROM x",
            "COPY t FROM STDIN",
            "DO $$ BEGIN PERFORM nextval('s'); END $$",
            "CALL p()",
            "",
        ] {
            assert!(sets(sql), "{sql}");
        }
    }

    #[test]
    fn reads_of_sequence_values_are_found_in_any_case() {
        assert!(reads_sequence_values(b"SELECT currval('s')"));
        assert!(reads_sequence_values(b"select LASTVAL()"));
        assert!(reads_sequence_values(b"select CurrVal('s')"));
        assert!(reads_sequence_values(b"currval"));
        assert!(reads_sequence_values(b"x lastvalue"));
        assert!(!reads_sequence_values(b"SELECT nextval('s')"));
        assert!(!reads_sequence_values(b"curr"));
        assert!(!reads_sequence_values(b"val"));
        assert!(!reads_sequence_values(b"cur val vvv"));
    }

    #[test]
    fn sequence_names_are_found_in_any_case_anywhere() {
        let sets = |t: &[u8]| sequence_words(t).sets;
        assert!(sets(b"SELECT NEXTVAL(1)"));
        assert!(sets(b"nextval"));
        assert!(sets(b"x SetVal"));
        assert!(sets(b"xsetvalue"));
        assert!(!sets(b"nextva"));
        assert!(!sets(b""));
        assert!(!sets(b"next val"));
        assert!(!sets(b"SELECT currval('s')"));
        let w = sequence_words(b"select nextval('a'), LASTVAL()");
        assert!(w.reads && w.sets);
        assert!(touches_sequence_values(b"SELECT currval('s');", |_| true));
        assert!(touches_sequence_values(b"SELECT setval('s', 1);", |_| true));
        assert!(!touches_sequence_values(
            b"SELECT abalance FROM t WHERE aid = 1;",
            |_| true
        ));
    }
}
