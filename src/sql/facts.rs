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
        for i in Hits::of(b) {
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
    const ONES: u64 = 0x0101_0101_0101_0101;
    const SELECT: u64 = u64::from_le_bytes(*b"select\0\0");
    const LETTERS: u64 = 0x0000_FFFF_FFFF_FFFF;
    let Some(first) = b.first_chunk::<8>() else {
        return false;
    };
    let word = u64::from_le_bytes(*first);
    (word | (LETTERS & (ONES * 0x20))) & LETTERS == SELECT && !IDENT_CONT[first[6] as usize]
}

/// The positions of the bytes any check looks at (`;`, `_`, `(`, `i`, `I`, `v`, `V`), in
/// order: sixteen bytes at a time, each block tested for all seven at once, and every hit
/// of a block taken from its mask (no block is looked at twice).
struct Hits<'a> {
    b: &'a [u8],
    /// Where the block of `mask` starts.
    at: usize,
    /// Bit `n`: byte `at + n` is a hit not yet returned.
    mask: u32,
}

impl<'a> Hits<'a> {
    fn of(b: &'a [u8]) -> Hits<'a> {
        Hits {
            b,
            at: 0,
            mask: block_mask(b, 0),
        }
    }
}

impl Iterator for Hits<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.at += BLOCK;
            if self.at >= self.b.len() {
                return None;
            }
            self.mask = block_mask(self.b, self.at);
        }
        let hit = self.at + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(hit)
    }
}

const BLOCK: usize = 16;

/// [`interesting`] of the sixteen bytes of `b` from `at` (past its end, NULs: not
/// interesting).
#[inline]
fn block_mask(b: &[u8], at: usize) -> u32 {
    let rest = b.get(at..).unwrap_or_default();
    let block = match rest.first_chunk::<BLOCK>() {
        Some(block) => *block,
        None => {
            let mut block = [0u8; BLOCK];
            block[..rest.len()].copy_from_slice(rest);
            block
        }
    };
    interesting(block)
}

/// Bit `n` set: byte `n` of `block` is interesting (see [`Hits`]). On x86-64 with SSE2
/// (every x86-64 processor): five byte compares of the whole block, about 16
/// instructions. With the word-at-a-time search it replaced, which looked again at the
/// words after each hit, `TextFacts::of` took ~530 instructions per `pgbench -S` query
/// text; with this, ~370 (stop 42, callgrind).
#[cfg(target_arch = "x86_64")]
#[inline]
fn interesting(block: [u8; BLOCK]) -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: SSE2 is part of the x86-64 baseline: every processor this target runs on has
    // it. The functions read nothing but their arguments (no pointer is involved).
    unsafe {
        interesting_sse2(block)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn interesting_sse2(block: [u8; BLOCK]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let [lo, hi] = [&block[..8], &block[8..]].map(|half| {
        let mut word = [0u8; 8];
        word.copy_from_slice(half);
        i64::from_le_bytes(word)
    });
    let x = _mm_set_epi64x(hi, lo);
    // Setting bit 5 folds `I` onto `i` and `V` onto `v` (and nothing else onto either).
    let folded = _mm_or_si128(x, _mm_set1_epi8(0x20));
    let eq = |v, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
    let hits = _mm_or_si128(
        _mm_or_si128(eq(folded, b'i'), eq(folded, b'v')),
        _mm_or_si128(eq(x, b';'), _mm_or_si128(eq(x, b'_'), eq(x, b'('))),
    );
    _mm_movemask_epi8(hits) as u32
}

/// [`interesting`] a byte at a time: the form elsewhere than x86-64, and what the tests
/// hold the SSE2 form to.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn interesting_bytewise(block: [u8; BLOCK]) -> u32 {
    block
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(**c | 0x20, b'i' | b'v') || matches!(**c, b';' | b'_' | b'('))
        .fold(0, |mask, (n, _)| mask | 1 << n)
}

#[cfg(not(target_arch = "x86_64"))]
use interesting_bytewise as interesting;

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
    fn the_block_search_finds_each_interesting_byte_and_no_other() {
        for c in 0..=255u8 {
            let expected = matches!(c, b';' | b'_' | b'(' | b'i' | b'I' | b'v' | b'V');
            // Within a block, at a block's edges, and in a last block cut short.
            for len in 1..40 {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = c;
                    let want: Vec<usize> = expected.then_some(at).into_iter().collect();
                    let found: Vec<usize> = Hits::of(&text).collect();
                    assert_eq!(found, want, "{c} at {at} of {len}");
                }
            }
        }
        // Every hit, in order, several to a block.
        let text = b"ab(;vI_x0123456789abcdef_ii;";
        let found: Vec<usize> = Hits::of(text).collect();
        assert_eq!(found, [2, 3, 4, 5, 6, 24, 25, 26, 27]);
        assert_eq!(Hits::of(b"abcdefgh\x00(").collect::<Vec<_>>(), [9]);
        assert_eq!(Hits::of(b"").next(), None);
    }

    /// The SSE2 form marks what the byte-at-a-time form marks, whatever the block.
    #[test]
    fn fuzz_the_block_forms_agree() {
        let blocks = proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(&b";_(iIvVaz \x00\xff\xc9\xd6"[..]),
                proptest::num::u8::ANY,
            ],
            BLOCK,
        );
        crate::fuzz::run("sql_text_blocks", 4000, blocks, |block| {
            let block: [u8; BLOCK] = block.try_into().expect("BLOCK bytes");
            assert_eq!(interesting(block), interesting_bytewise(block), "{block:?}");
            Ok(())
        });
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
