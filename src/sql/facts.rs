//! One pass over a statement's text for every policy that reads it: the session-state
//! prefilter ([`may_have_effects`]), the sequence-value check
//! ([`touches_sequence_values`]) and the opaque-call check ([`call_candidates`]) each
//! scanned the text of every Query and Parse on their own (issue 11).

use super::lexer::{IDENT_CONT, SPACE};
#[cfg(doc)]
use super::prefilter::{call_candidates, may_have_effects, touches_sequence_values};
use super::prefilter::{eq_kw, names_call, starts_relevant, starts_with_kw};

/// What the prefilters need to know of one statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFacts {
    /// [`may_have_effects`]: false only if the full effect scan would surely find nothing.
    pub effects: bool,
    /// The text names `currval` or `lastval` (any case, anywhere).
    reads_seq: bool,
    /// The text names `nextval` or `setval` (any case, anywhere).
    sets_seq: bool,
    /// The first word is `SELECT`, `VALUES`, `TABLE` or `SHOW`.
    plain_read: bool,
    /// A `;` before the last statement's end: a second statement follows.
    second_statement: bool,
    /// A `(` somewhere: only then can [`call_candidates`] find a word.
    pub parens: bool,
}

impl TextFacts {
    /// Scans `b` once.
    pub fn of(b: &[u8]) -> TextFacts {
        let mut select = false;
        let mut f = TextFacts {
            effects: starts_relevant(b, 0, &mut select),
            reads_seq: false,
            sets_seq: false,
            plain_read: plain_read(b),
            second_statement: false,
            parens: false,
        };
        let mut first_semi = None;
        let mut i = 0;
        while let Some(at) = next_interesting(b, i) {
            i = at;
            match b[i] {
                b';' => {
                    first_semi.get_or_insert(i);
                    f.effects = f.effects || starts_relevant(b, i + 1, &mut select);
                }
                b'_' => f.effects = f.effects || names_call(b, i),
                b'(' => f.parens = true,
                b'v' | b'V' => f.sequence_word(b, i),
                // `i` or `I`.
                _ => f.effects = f.effects || (select && starts_with_kw(&b[i..], b"into")),
            }
            i += 1;
        }
        if let Some(semi) = first_semi {
            // A `;` ending the text (as pgbench and many drivers send it) starts nothing.
            let end = b
                .iter()
                .rposition(|&c| c != b';' && !SPACE[c as usize])
                .map_or(0, |n| n + 1);
            f.second_statement = semi < end;
        }
        f
    }

    /// [`touches_sequence_values`] of the text: `unlisted_call` says whether
    /// [`call_candidates`] finds a word naming a function that is not allowed (asked only
    /// when nothing else settles it).
    pub fn touches_sequence_values(&self, unlisted_call: impl FnOnce() -> bool) -> bool {
        self.reads_seq
            || self.sets_seq
            || !self.plain_read
            || self.second_statement
            || (self.parens && unlisted_call())
    }

    /// The `v` at `b[v]` may end a sequence function's name (all four end in "val").
    fn sequence_word(&mut self, b: &[u8], v: usize) {
        if !starts_with_kw(&b[v..], b"val") {
            return;
        }
        let before = |n: usize, kw: &[u8]| v >= n && eq_kw(&b[v - n..v], kw);
        self.reads_seq |= before(4, b"curr") || before(4, b"last");
        self.sets_seq |= before(4, b"next") || before(3, b"set");
    }
}

/// Whether the text's first word is a plain read (`SELECT`, `VALUES`, `TABLE`, `SHOW`).
fn plain_read(b: &[u8]) -> bool {
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
    [&b"select"[..], b"values", b"table", b"show"]
        .iter()
        .any(|kw| eq_kw(word, kw))
}

/// Position of the next byte any check looks at, at or after `from`.
fn next_interesting(b: &[u8], from: usize) -> Option<usize> {
    let mut base = from;
    // Whole chunks without a branch per byte: most bytes are uninteresting.
    for chunk in b.get(from..)?.chunks_exact(8) {
        if chunk
            .iter()
            .fold(false, |any, &c| any | INTERESTING[c as usize])
        {
            break;
        }
        base += 8;
    }
    let rest = b.get(base..)?;
    rest.iter()
        .position(|&c| INTERESTING[c as usize])
        .map(|n| base + n)
}

static INTERESTING: [bool; 256] = {
    let mut t = [false; 256];
    t[b';' as usize] = true;
    t[b'_' as usize] = true;
    t[b'i' as usize] = true;
    t[b'I' as usize] = true;
    t[b'v' as usize] = true;
    t[b'V' as usize] = true;
    t[b'(' as usize] = true;
    t
};

#[cfg(test)]
mod tests {
    use super::super::prefilter::{call_candidates, may_have_effects, touches_sequence_values};
    use super::*;

    /// The one pass answers as the separate prefilters do.
    fn agrees(sql: &[u8]) {
        let f = TextFacts::of(sql);
        assert_eq!(f.effects, may_have_effects(sql), "effects of {sql:?}");
        for allowed in [&b"count"[..], b"now", b"zzz"] {
            let ok = |w: &[u8]| eq_kw(w, allowed) || eq_kw(w, b"currval");
            let unlisted = || call_candidates(sql).any(|w| !ok(w));
            assert_eq!(
                f.touches_sequence_values(unlisted),
                touches_sequence_values(sql, ok),
                "sequences of {sql:?} allowing {allowed:?}"
            );
        }
        if !f.parens {
            assert!(call_candidates(sql).next().is_none(), "calls in {sql:?}");
        }
    }

    #[test]
    fn one_pass_answers_as_the_separate_prefilters() {
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
            "SELECT 1",
            "  select count(*) from t",
            "SELECT currval('s')",
            "VALUES (1)",
            "SHOW search_path",
            "table t",
            "SELECT 1 ;\n ; ",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "SELECT nextval('s')",
            "SELECT NEXTVAL('s')",
            "SELECT setval('s', 5)",
            "SELECT my_func()",
            "SELECT now()",
            "SELECT 1; INSERT INTO t DEFAULT VALUES",
            "SELECT 1; SET search_path = x;",
            "SELECT ';' ;",
            "SELECT * INTO t2 FROM t",
            "select pg_advisory_lock(1)",
            "SELECT set_config('a', 'b', false)",
            "SET x = 1",
            "/* c */ SELECT 1",
            "-- c\nSELECT 1",
            "WITH x AS (INSERT INTO t DEFAULT VALUES RETURNING *) SELECT * FROM x",
            "DO $$ BEGIN PERFORM nextval('s'); END $$",
            "select lastval()",
            "x lastvalue",
            "",
            ";",
            "(",
            "v",
            "val",
        ] {
            agrees(sql.as_bytes());
        }
    }

    #[test]
    fn one_pass_answers_as_the_separate_prefilters_on_any_text() {
        crate::fuzz::run("sql_text_facts", 4000, crate::fuzz::sql_text(), |sql| {
            agrees(sql.as_bytes());
            Ok(())
        });
    }
}
