//! One pass over a statement's text for every policy that reads it: the session-state
//! prefilter ([`may_have_effects`]), the sequence-value check
//! ([`touches_sequence_values`]), the opaque-call check ([`call_candidates`]) and the
//! `pg_prepared_statements` check ([`may_name_prepared_view`]) and the
//! `pg_listening_channels()` check ([`may_call_listening_channels`]) each scanned the text
//! of every Query and Parse on their own (issue 11).

#[cfg(doc)]
use super::channels::may_call_listening_channels;
use super::channels::names_function_at;
use super::effects::{Verb, verb};
use super::lexer::{IDENT_CONT, SPACE};
#[cfg(doc)]
use super::pps::may_name_prepared_view;
use super::pps::names_view_at;
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
    /// The first word (no comment before it) is `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
    dml: bool,
    /// A `(` somewhere: only then can [`call_candidates`] find a word.
    pub parens: bool,
    /// [`may_name_prepared_view`]: the text may name `pg_prepared_statements`.
    pub view: bool,
    /// [`may_call_listening_channels`]: the text may call `pg_listening_channels()`.
    pub channels: bool,
}

impl TextFacts {
    /// Scans `b` once.
    pub fn of(b: &[u8]) -> TextFacts {
        let (lead, plain_read, dml) = lead_word(b);
        let mut select = lead == Some(Verb::Select);
        let mut f = TextFacts {
            effects: lead.is_none_or(|v| !matches!(v, Verb::Select | Verb::Other)),
            reads_seq: false,
            sets_seq: false,
            plain_read,
            second_statement: false,
            dml,
            parens: false,
            view: false,
            channels: false,
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
                b'_' => {
                    // Every name looked for at a `_` starts `pg_` or `set_` (most words
                    // with a `_` do neither).
                    let pg = i >= 2 && b.get(i - 2..i).is_some_and(|w| eq_kw(w, b"pg"));
                    let set = !pg && i >= 3 && b.get(i - 3..i).is_some_and(|w| eq_kw(w, b"set"));
                    if pg || set {
                        f.effects = f.effects || names_call(b, i);
                    }
                    if pg {
                        f.view = f.view || names_view_at(b, i);
                        f.channels = f.channels || names_function_at(b, i);
                    }
                }
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

    /// [`TextFacts::of`] for a text that is likely to come again: a Parse's, which drivers
    /// send with the same parameterised text transaction after transaction (a Query's
    /// text mostly carries its values as literals, and is scanned each time). Kept per
    /// worker thread, by the exact text, so what it answers is always what `of` would.
    pub fn of_repeated(b: &[u8]) -> TextFacts {
        if b.len() > SEEN_MAX_LEN {
            return TextFacts::of(b);
        }
        SEEN.with(|seen| {
            let Ok(mut seen) = seen.try_borrow_mut() else {
                return TextFacts::of(b);
            };
            let slots = &mut seen.slots;
            if slots.is_empty() {
                slots.resize_with(SEEN_SLOTS, || None);
            }
            let Some(slot) = slots.get_mut(seen_slot(b)) else {
                return TextFacts::of(b);
            };
            match slot {
                Some((text, facts)) if text.as_slice() == b => *facts,
                Some((text, facts)) => {
                    // Another text had this slot: its buffer is reused.
                    text.clear();
                    text.extend_from_slice(b);
                    *facts = TextFacts::of(b);
                    *facts
                }
                None => {
                    let facts = TextFacts::of(b);
                    *slot = Some((b.to_vec(), facts));
                    facts
                }
            }
        })
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

    /// The text is one `INSERT`, `UPDATE`, `DELETE` or `MERGE` and nothing else (no
    /// second statement, no comment before it; a `;` inside a literal counts as a second
    /// statement). Run outside a transaction block, it commits or fails as it ends: no
    /// transaction is open after it, and it reads no input of its own (not `COPY`).
    pub fn one_dml(&self) -> bool {
        self.dml && !self.second_statement
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

/// Texts [`TextFacts::of_repeated`] keeps per thread (one per slot of a direct-mapped
/// table: a text displaces another only when their hashes meet).
const SEEN_SLOTS: usize = 64;
/// Longer texts are scanned each time: keeping them would cost more memory than their
/// scan costs time next to what they run.
const SEEN_MAX_LEN: usize = 1024;

/// The texts seen on this thread, with their facts (at most
/// `SEEN_SLOTS * SEEN_MAX_LEN` bytes).
#[derive(Default)]
struct Seen {
    slots: Vec<Option<(Vec<u8>, TextFacts)>>,
}

/// The slot of `b` in [`Seen`]: its length and three of its words (first, middle, last),
/// mixed. Not a hash of every byte: a slot only says where to compare the whole text, and
/// texts that share one merely take turns in it.
fn seen_slot(b: &[u8]) -> usize {
    let word = |at: usize| {
        b.get(at..)
            .and_then(|w| w.first_chunk::<8>())
            .map_or(0, |w| u64::from_le_bytes(*w))
    };
    let tail = b.len().saturating_sub(8);
    let mixed =
        (b.len() as u64 ^ word(0) ^ word(tail / 2).rotate_left(21) ^ word(tail).rotate_left(42))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 58) as usize % SEEN_SLOTS
}

thread_local! {
    static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
}

/// The first statement's verb as [`starts_relevant`] at 0 sees it (`None`: the text
/// starts with a comment, which the effect scan must look past), and whether the first
/// word is a plain read (`SELECT`, `VALUES`, `TABLE`, `SHOW`): one look at the first word
/// for both, and whether it is `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
fn lead_word(b: &[u8]) -> (Option<Verb>, bool, bool) {
    if starts_select(b) {
        return (Some(Verb::Select), true, false);
    }
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
    let v = verb(word);
    let plain_read = v == Verb::Select
        || [&b"values"[..], b"table", b"show"]
            .iter()
            .any(|kw| eq_kw(word, kw));
    let dml = v == Verb::Other
        && [&b"insert"[..], b"update", b"delete", b"merge"]
            .iter()
            .any(|kw| eq_kw(word, kw));
    let comment = rest.starts_with(b"--") || rest.starts_with(b"/*");
    ((!comment).then_some(v), plain_read, dml)
}

/// Whether `b` starts with the word `SELECT` (any case, nothing before it): the most
/// common first word, told with one compare of its first eight bytes. Setting bit 5 of a
/// byte turns it into a given lowercase letter only if it is that letter in either case.
fn starts_select(b: &[u8]) -> bool {
    const SELECT: u64 = u64::from_le_bytes(*b"select\0\0");
    const LETTERS: u64 = 0x0000_FFFF_FFFF_FFFF;
    let Some(first) = b.first_chunk::<8>() else {
        return false;
    };
    let word = u64::from_le_bytes(*first);
    (word | (LETTERS & (ONES * 0x20))) & LETTERS == SELECT && !IDENT_CONT[first[6] as usize]
}

/// Position of the next byte any check looks at (`;`, `_`, `(`, `i`, `I`, `v`, `V`), at
/// or after `from`: eight bytes at a time, each word tested for all seven at once.
fn next_interesting(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(&word) = b.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let hits = interesting(u64::from_le_bytes(word));
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    // The last 1 to 7 bytes, as the low bytes of a word whose high bytes are NULs (not
    // interesting): the text's last eight bytes shifted down, or for a text shorter than
    // eight bytes, the bytes themselves.
    let n = b.len().checked_sub(at).filter(|&n| n > 0)?;
    let word = match b.last_chunk::<8>() {
        Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - n)),
        None => b[at..]
            .iter()
            .rev()
            .fold(0, |w, &c| (w << 8) | u64::from(c)),
    };
    let hits = interesting(word);
    (hits != 0).then(|| at + (hits.trailing_zeros() / 8) as usize)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks the interesting bytes of `x` (see [`next_interesting`]) by their high bit: for
/// each byte `p` looked for, `(y - ONES) & !y & HIGHS` with `y = x ^ (ONES * p)` marks the
/// bytes of `x` equal to `p`. The lowest mark is always a true one (a borrow only carries
/// upwards); marks above it may not be.
#[inline]
fn interesting(x: u64) -> u64 {
    // Setting bit 5 folds `I` onto `i` and `V` onto `v` (and nothing else onto either).
    let folded = x | (ONES * 0x20);
    let marks = |y: u64| y.wrapping_sub(ONES) & !y;
    (marks(folded ^ (ONES * b'i' as u64))
        | marks(folded ^ (ONES * b'v' as u64))
        | marks(x ^ (ONES * b';' as u64))
        | marks(x ^ (ONES * b'_' as u64))
        | marks(x ^ (ONES * b'(' as u64)))
        & HIGHS
}

#[cfg(test)]
mod tests {
    use super::super::prefilter::{call_candidates, may_have_effects, touches_sequence_values};
    use super::*;

    /// The one pass answers as the separate prefilters do.
    fn agrees(sql: &[u8]) {
        let f = TextFacts::of(sql);
        assert_eq!(f.effects, may_have_effects(sql), "effects of {sql:?}");
        let view = crate::sql::may_name_prepared_view(sql);
        assert_eq!(f.view, view, "view in {sql:?}");
        let channels = crate::sql::channels::may_call_listening_channels(sql);
        assert_eq!(f.channels, channels, "channels in {sql:?}");
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
            "SELECT * FROM pg_prepared_statements",
            "select name from PG_Prepared_Statements;",
            "SELECT * FROM \"pg_prepared_statements\" p",
            "SELECT pg_prepared_statement",
            "_pg_prepared_statements",
        ] {
            agrees(sql.as_bytes());
        }
    }

    /// The short cut for a leading `SELECT` answers as the general word split does.
    #[test]
    fn a_leading_select_is_told_as_the_word_split_tells_it() {
        for sql in [
            "SELECT 1",
            "select*from t",
            "SeLeCt\n1",
            "SELECT_1 FROM t",
            "SELECTS 1",
            "SELEC 1 ",
            "selecT1",
            " SELECT 1",
            "SELECT",
            "SELECT;",
            "sElEcT(1)",
            "\u{130}SELECT 1",
            "SEL\x01CT 1",
            "sel\x05ct 1",
        ] {
            let b = sql.as_bytes();
            let word = b
                .iter()
                .position(|&c| !IDENT_CONT[c as usize])
                .unwrap_or(b.len());
            let general = verb(&b[..word]) == Verb::Select;
            assert_eq!(starts_select(b), general && b.len() >= 8, "{sql:?}");
            if starts_select(b) {
                assert_eq!(lead_word(b), (Some(Verb::Select), true, false), "{sql:?}");
            }
        }
        for c in 0..=255u8 {
            for at in 0..7 {
                let mut text = *b"select x";
                text[at] = c;
                let same = if at < 6 {
                    c == b"select"[at] || c == b"SELECT"[at]
                } else {
                    !IDENT_CONT[c as usize]
                };
                let split_select = {
                    let word = text
                        .iter()
                        .position(|&c| !IDENT_CONT[c as usize])
                        .unwrap_or(8);
                    verb(&text[..word]) == Verb::Select
                };
                assert_eq!(starts_select(&text), split_select, "byte {c} at {at}");
                assert_eq!(starts_select(&text), same, "byte {c} at {at}");
            }
        }
    }

    #[test]
    fn the_word_search_finds_each_interesting_byte_and_no_other() {
        for c in 0..=255u8 {
            let expected = matches!(c, b';' | b'_' | b'(' | b'i' | b'I' | b'v' | b'V');
            for len in 1..20 {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = c;
                    let want = expected.then_some(at);
                    assert_eq!(next_interesting(&text, 0), want, "{c} at {at} of {len}");
                    assert_eq!(next_interesting(&text, at + 1), None, "after {c}");
                }
            }
        }
        // The first of several, whatever follows it in its word.
        assert_eq!(next_interesting(b"ab(;vI_x", 0), Some(2));
        assert_eq!(next_interesting(b"abcdefgh\x00(", 0), Some(9));
    }

    #[test]
    fn fuzz_one_pass_answers_as_the_separate_prefilters() {
        crate::fuzz::run("sql_text_facts", 4000, crate::fuzz::sql_text(), |sql| {
            agrees(sql.as_bytes());
            assert_eq!(
                TextFacts::of_repeated(sql.as_bytes()),
                TextFacts::of(sql.as_bytes())
            );
            Ok(())
        });
    }

    /// The kept facts are those of the very text asked about, whichever texts shared its
    /// slot before (many more texts than slots, each asked twice, in two orders), and a
    /// text too long to keep is scanned.
    #[test]
    fn kept_facts_are_the_texts_own() {
        let texts: Vec<String> = (0..SEEN_SLOTS * 4)
            .map(|n| match n % 4 {
                0 => format!("SELECT a FROM t{n} WHERE id = $1"),
                1 => format!("INSERT INTO t{n} VALUES ($1)"),
                2 => format!("SELECT nextval('s{n}')"),
                _ => format!("SELECT 1; SET x{n} = 1"),
            })
            .collect();
        for round in 0..2 {
            for t in texts.iter().chain(texts.iter().rev()) {
                let b = t.as_bytes();
                assert_eq!(
                    TextFacts::of_repeated(b),
                    TextFacts::of(b),
                    "{t} in round {round}"
                );
            }
        }
        let long = format!("SELECT nextval('s') /* {} */", "x".repeat(SEEN_MAX_LEN));
        let b = long.as_bytes();
        assert_eq!(TextFacts::of_repeated(b), TextFacts::of(b));
        assert!(TextFacts::of_repeated(b).sets_seq);
    }
}
