//! `pg_listening_channels()` as a client's own: where pgsluice's listener holds a client's
//! LISTENs, the server the client runs on lists none of them, so a call of the function is
//! replaced by a set-returning expression over the client's channels (in the order it
//! listened) followed by the server's own (a LISTEN inside a transaction block runs there).
//!
//! Only unquoted calls, bare or `pg_catalog.`-qualified, in a statement that reads
//! (`SELECT`, `WITH`, `VALUES`, `TABLE`, `DECLARE`, `COPY`, `INSERT`, `UPDATE`, `DELETE`)
//! are replaced: not inside `CREATE VIEW`, `PREPARE` or other DDL, where the list would be
//! fixed for later runs, and not in `EXPLAIN`, whose plan would show the replacement. The
//! result column keeps its name `pg_listening_channels`: the replacement is aliased where
//! it stands alone as a select-list item (a `::type` cast after it allowed) or as a FROM
//! item without an alias. The replacement names the function quoted, so a rewritten text
//! is never rewritten again.

use super::cursor::{is_kw, slice};
use super::lexer::{Kind, Lexer, Tok};
use super::pps::{NOT_ALIAS, literal};
use super::prefilter::eq_kw;

/// The function's name.
const FUNC: &[u8] = b"pg_listening_channels";

/// A cheap byte test: false when `text` surely does not call the function (any case).
/// Plain statements pay one `memchr` pass for `_`.
pub fn may_call_listening_channels(text: &[u8]) -> bool {
    memchr::memchr_iter(b'_', text).any(|i| names_function_at(text, i))
}

/// Whether the `_` at `i` of `text` is the first of `pg_listening_channels` (any case).
pub(super) fn names_function_at(text: &[u8], i: usize) -> bool {
    // `pg_listening_channels`: the first `_` is at offset 2 (compared byte by byte, as
    // `names_view_at`).
    i >= 2
        && text
            .get(i - 2..i - 2 + FUNC.len())
            .is_some_and(|w| eq_kw(w, FUNC))
}

/// Rewrites every call of `pg_listening_channels()` in `sql` (see the module docs) so that
/// it returns `channels` (in this order) and then the server's own channels not among
/// them. `budget` bounds the bytes the channel names may add per call: names past it are
/// left out. `None` when nothing is replaced.
pub fn rewrite(sql: &str, channels: &[&str], budget: usize) -> Option<String> {
    let calls = calls(sql);
    if calls.is_empty() {
        return None;
    }
    let with = replacement(channels, budget / calls.len());
    let mut out = String::with_capacity(sql.len() + calls.len() * (with.len() + 32));
    let mut at = 0;
    for c in &calls {
        out.push_str(slice(sql, at, c.start));
        out.push_str(&with);
        at = c.end;
        if let Some(alias_at) = c.alias_at {
            out.push_str(slice(sql, at, alias_at));
            at = alias_at;
            // Without channels the replacement is the function itself, named as before.
            if !channels.is_empty() {
                out.push_str(" AS pg_listening_channels");
            }
        }
    }
    out.push_str(slice(sql, at, sql.len()));
    Some(out)
}

/// The expression standing for the call: the client's channels, then those the server
/// itself listens on that are not among them.
pub fn replacement(channels: &[&str], budget: usize) -> String {
    const SERVER: &str = "pg_catalog.\"pg_listening_channels\"()";
    if channels.is_empty() {
        return SERVER.to_string();
    }
    let mut array = String::from("ARRAY[");
    for (i, ch) in channels.iter().enumerate() {
        let mut one = String::with_capacity(ch.len() + 4);
        if i > 0 {
            one.push(',');
        }
        literal(&mut one, ch);
        if 2 * (array.len() + one.len()) > budget && i > 0 {
            break;
        }
        array.push_str(&one);
    }
    array.push_str("]::text[]");
    format!(
        "pg_catalog.unnest({array} || ARRAY(SELECT c FROM {SERVER} c \
         WHERE c OPERATOR(pg_catalog.<>) ALL ({array})))"
    )
}

/// A call to replace: its byte range (`pg_catalog.` included).
#[derive(Debug, PartialEq, Eq)]
struct Call {
    start: usize,
    end: usize,
    /// Where ` AS pg_listening_channels` goes, when the result would otherwise be named
    /// for the replacement.
    alias_at: Option<usize>,
}

/// The clause a parenthesis level is in, as far as the rewrite cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    Other,
    Select,
    From,
}

/// First words of statements whose calls are replaced.
const READERS: &[&str] = &[
    "select", "with", "values", "table", "declare", "copy", "insert", "update", "delete",
];

/// Words that end a select list or a FROM list.
const ENDS: &[&str] = &[
    "into",
    "where",
    "group",
    "having",
    "window",
    "order",
    "limit",
    "offset",
    "fetch",
    "for",
    "union",
    "intersect",
    "except",
    "returning",
    "set",
    "values",
];

/// Finds the calls to replace.
fn calls(sql: &str) -> Vec<Call> {
    let toks: Vec<Tok> = Lexer::new(sql).collect();
    let mut found = Vec::new();
    let mut clause: Vec<Clause> = vec![Clause::Other];
    let mut lead: Option<Tok> = None;
    for (i, &t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') => clause.push(Clause::Other),
            Kind::Punct(b')') if clause.len() > 1 => {
                clause.pop();
            }
            Kind::Punct(b';') => {
                lead = None;
                clause.clear();
                clause.push(Clause::Other);
                continue;
            }
            _ => {}
        }
        if lead.is_none() && t.kind != Kind::Punct(b'(') {
            lead = Some(t);
        }
        let Some(here) = clause.last_mut() else {
            continue;
        };
        if t.kind == Kind::Word {
            if is_kw(sql, t, "select") {
                *here = Clause::Select;
            } else if is_kw(sql, t, "from") || is_kw(sql, t, "join") {
                *here = Clause::From;
            } else if ENDS.iter().any(|k| is_kw(sql, t, k)) {
                *here = Clause::Other;
            }
        }
        let reads = lead.is_some_and(|l| READERS.iter().any(|k| is_kw(sql, l, k)));
        if reads && let Some(call) = call_at(sql, &toks, i, *here) {
            found.push(call);
        }
    }
    found
}

/// The call whose name is token `i`, when it is one to replace; `clause` is the clause
/// of its parenthesis level.
fn call_at(sql: &str, toks: &[Tok], i: usize, clause: Clause) -> Option<Call> {
    let tok = |j: usize| toks.get(j).copied();
    let name = tok(i)?;
    if name.kind != Kind::Word
        || !slice(sql, name.start, name.end).eq_ignore_ascii_case("pg_listening_channels")
    {
        return None;
    }
    let punct = |j: usize, p: u8| tok(j).is_some_and(|t| t.kind == Kind::Punct(p));
    if !punct(i + 1, b'(') || !punct(i + 2, b')') {
        return None;
    }
    let mut start = i;
    if i >= 1 && punct(i - 1, b'.') {
        if i < 2 || !tok(i - 2).is_some_and(|t| is_kw(sql, t, "pg_catalog")) {
            return None;
        }
        start = i - 2;
    }
    let end = tok(i + 2)?.end;
    let before = start.checked_sub(1).and_then(tok);
    // After `AS` the name is an alias (the one this rewrite adds, say), never a call.
    if before.is_some_and(|b| is_kw(sql, b, "as")) {
        return None;
    }
    let after_list = |t: Tok| {
        t.kind == Kind::Punct(b',')
            || ["select", "distinct", "all"]
                .iter()
                .any(|k| is_kw(sql, t, k))
    };
    let after_from = |t: Tok| {
        t.kind == Kind::Punct(b',') || ["from", "join", "lateral"].iter().any(|k| is_kw(sql, t, k))
    };
    let alias_at = match (clause, before) {
        (Clause::Select, Some(b)) if after_list(b) => select_item_alias(sql, toks, i + 3),
        (Clause::From, Some(b)) if after_from(b) => from_item_alias(sql, toks, i + 3),
        _ => None,
    };
    Some(Call {
        start: toks.get(start)?.start,
        end,
        alias_at,
    })
}

/// For a select-list item whose call ends before token `j`: where its alias goes, when
/// the item is the call alone (perhaps cast to a one-word type) and has none.
fn select_item_alias(sql: &str, toks: &[Tok], mut j: usize) -> Option<usize> {
    let tok = |j: usize| toks.get(j).copied();
    let punct = |j: usize, p: u8| tok(j).is_some_and(|t| t.kind == Kind::Punct(p));
    let mut end = tok(j.checked_sub(1)?)?.end;
    // `::name`, `::schema.name`, `::name(n)`, `::name[]`, any number of them.
    while punct(j, b':') && punct(j + 1, b':') && tok(j + 2).is_some_and(|t| t.kind == Kind::Word) {
        j += 3;
        while punct(j, b'.') && tok(j + 1).is_some_and(|t| t.kind == Kind::Word) {
            j += 2;
        }
        if punct(j, b'(')
            && tok(j + 1).is_some_and(|t| t.kind == Kind::Literal)
            && punct(j + 2, b')')
        {
            j += 3;
        }
        while punct(j, b'[') && punct(j + 1, b']') {
            j += 2;
        }
        end = tok(j - 1)?.end;
    }
    let ends_item = match tok(j) {
        None => true,
        Some(t) => match t.kind {
            Kind::Punct(b',' | b')' | b';') => true,
            // `set` and `values` may be an alias.
            Kind::Word => {
                is_kw(sql, t, "from")
                    || ENDS
                        .iter()
                        .any(|k| !matches!(*k, "set" | "values") && is_kw(sql, t, k))
            }
            _ => false,
        },
    };
    ends_item.then_some(end)
}

/// For a FROM item whose call ends before token `j`: where its alias goes, when it has
/// none (after `WITH ORDINALITY`, if given).
fn from_item_alias(sql: &str, toks: &[Tok], mut j: usize) -> Option<usize> {
    let tok = |j: usize| toks.get(j).copied();
    let mut end = tok(j.checked_sub(1)?)?.end;
    if tok(j).is_some_and(|t| is_kw(sql, t, "with"))
        && let Some(ord) = tok(j + 1).filter(|t| is_kw(sql, *t, "ordinality"))
    {
        end = ord.end;
        j += 2;
    }
    let aliased = tok(j).is_some_and(|t| match t.kind {
        Kind::Quoted => true,
        Kind::Word => !NOT_ALIAS.iter().any(|k| is_kw(sql, t, k)),
        _ => false,
    });
    (!aliased).then_some(end)
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;
