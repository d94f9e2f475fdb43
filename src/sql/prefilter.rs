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
fn starts_relevant(b: &[u8], i: usize, select: &mut bool) -> bool {
    let rest = b.get(i..).unwrap_or_default();
    let n = rest
        .iter()
        .position(|&c| !SPACE[c as usize])
        .unwrap_or(rest.len());
    let rest = &rest[n..];
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
fn names_call(b: &[u8], i: usize) -> bool {
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
            let at = from + rest.iter().position(|&c| c == b'(')?;
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
