//! `pg_prepared_statements` as a client's own: finds where a statement reads the view and
//! puts in its place a subquery that joins the server's view with the client's names,
//! texts and kinds, so that a pooler sharing server-side statements can answer as a
//! direct connection would.
//!
//! Only unquoted references as a FROM item (after `FROM`, `JOIN`, a `,` in a FROM list,
//! or `TABLE`) in a statement that reads (`SELECT`, `WITH`, `VALUES`, `TABLE`, `EXPLAIN`,
//! `DECLARE`, `COPY`, `INSERT`, `UPDATE`, `DELETE ... USING`) are rewritten, bare or as
//! `pg_catalog.pg_prepared_statements`. The subquery names the view quoted, so a rewritten
//! text is never rewritten again.

use super::cursor::{is_kw, slice};
use super::lexer::{Kind, Lexer, Tok};
use super::prefilter::eq_kw;

/// The view's name.
const VIEW: &[u8] = b"pg_prepared_statements";

/// A cheap byte test: false when `text` surely does not name the view (any case, any
/// quoting). Plain statements pay one `memchr` pass for `_`.
pub fn may_name_prepared_view(text: &[u8]) -> bool {
    memchr::memchr_iter(b'_', text).any(|i| names_view_at(text, i))
}

/// Whether the `_` at `text[i]` is the first of `pg_prepared_statements` (any case).
pub(super) fn names_view_at(text: &[u8], i: usize) -> bool {
    // `pg_prepared_statements`: the first `_` is at offset 2. A byte-by-byte compare
    // (not `eq_ignore_ascii_case`, whose set-up costs more) stops at the first
    // difference: nearly always the first byte.
    i >= 2
        && text
            .get(i - 2..i - 2 + VIEW.len())
            .is_some_and(|w| eq_kw(w, VIEW))
}

/// One of the client's prepared statements, as the rewritten view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRow<'a> {
    /// The server-side name (the join key).
    pub server: &'a str,
    /// The client's name.
    pub name: &'a str,
    /// The client's statement text, when it differs from the server's.
    pub text: Option<&'a str>,
    /// Prepared by SQL `PREPARE` (not by a protocol-level Parse).
    pub from_sql: bool,
}

/// What [`rewrite`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The text does not read the view.
    None,
    /// It reads the view, but only in a form already rewritten or left alone (quoted).
    Already,
    /// The rewritten text.
    Text(String),
}

/// Rewrites every reference to `pg_prepared_statements` in `sql` (see the module docs).
/// `budget` bounds the bytes each subquery may spend on rows; rows past it are left out.
pub fn rewrite(sql: &str, rows: &[ViewRow<'_>], budget: usize) -> Rewrite {
    let refs = references(sql);
    if refs.spans.is_empty() {
        return if refs.mentioned {
            Rewrite::Already
        } else {
            Rewrite::None
        };
    }
    let per = budget / refs.spans.len();
    let sub = subquery(rows, per);
    let mut out = String::with_capacity(sql.len() + refs.spans.len() * (sub.len() + 40));
    let mut at = 0;
    for r in &refs.spans {
        out.push_str(slice(sql, at, r.start));
        if r.table {
            out.push_str("SELECT * FROM ");
        }
        out.push_str(&sub);
        if !r.aliased {
            out.push_str(" AS pg_prepared_statements");
        }
        at = r.end;
    }
    out.push_str(slice(sql, at, sql.len()));
    Rewrite::Text(out)
}

/// The subquery standing for the view: the server's rows of the client's statements,
/// with the client's name, text and kind, in name order. Every column of the server's
/// view is kept as its type (`jsonb_populate_record` over the view's row type), so the
/// columns are right for any PostgreSQL version.
pub fn subquery(rows: &[ViewRow<'_>], budget: usize) -> String {
    let mut values = String::from("(NULL::text, NULL::text, NULL::text, NULL::boolean)");
    for r in rows {
        let mut row = String::with_capacity(r.name.len() + r.server.len() + 32);
        row.push_str(", (");
        literal(&mut row, r.server);
        row.push_str(", ");
        literal(&mut row, r.name);
        row.push_str(", ");
        match r.text {
            Some(t) => literal(&mut row, t),
            None => row.push_str("NULL"),
        }
        row.push_str(if r.from_sql { ", true)" } else { ", false)" });
        if values.len() + row.len() > budget {
            break;
        }
        values.push_str(&row);
    }
    format!(
        "(SELECT r.* FROM pg_catalog.\"pg_prepared_statements\" s \
         JOIN (VALUES {values}) m(k, n, t, f) ON s.name = m.k \
         CROSS JOIN LATERAL pg_catalog.jsonb_populate_record(s, \
         pg_catalog.jsonb_build_object('name', m.n, 'statement', \
         COALESCE(m.t, s.statement), 'from_sql', m.f)) r ORDER BY m.n)"
    )
}

/// `s` as an escape string literal: read the same whatever `standard_conforming_strings`
/// says.
pub(super) fn literal(out: &mut String, s: &str) {
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// A reference to rewrite: its byte range (`pg_catalog.` included).
#[derive(Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    /// The client gave it an alias (so none is added).
    aliased: bool,
    /// `TABLE pg_prepared_statements`: the range starts at `TABLE`.
    table: bool,
}

#[derive(Debug, Default)]
struct Refs {
    spans: Vec<Span>,
    /// The view is named, rewritten or not (quoted, a column qualifier, ...).
    mentioned: bool,
}

/// Words ending a FROM list, or otherwise not an alias after a FROM item.
pub(super) const NOT_ALIAS: &[&str] = &[
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
    "join",
    "inner",
    "left",
    "right",
    "full",
    "cross",
    "natural",
    "on",
    "using",
    "returning",
    "into",
    "tablesample",
    "with",
    "set",
    "then",
    "else",
    "end",
    "when",
    "and",
    "or",
];

/// Clause words after which a `,` no longer separates FROM items.
const ENDS_FROM: &[&str] = &[
    "select",
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

/// First words of statements whose view references are rewritten.
const READERS: &[&str] = &[
    "select", "with", "values", "table", "explain", "declare", "copy", "insert", "update", "delete",
];

fn is_view(sql: &str, t: Tok) -> bool {
    t.kind == Kind::Word
        && slice(sql, t.start, t.end).eq_ignore_ascii_case("pg_prepared_statements")
}

fn is_quoted_view(sql: &str, t: Tok) -> bool {
    t.kind == Kind::Quoted && slice(sql, t.start, t.end) == "\"pg_prepared_statements\""
}

/// Finds the references to rewrite.
fn references(sql: &str) -> Refs {
    let toks: Vec<Tok> = Lexer::new(sql).collect();
    let mut refs = Refs::default();
    // Per parenthesis depth: inside a FROM list.
    let mut in_from: Vec<bool> = vec![false];
    let mut lead: Option<Tok> = None;
    for (i, &t) in toks.iter().enumerate() {
        match t.kind {
            Kind::Punct(b'(') => in_from.push(false),
            Kind::Punct(b')') if in_from.len() > 1 => {
                in_from.pop();
            }
            Kind::Punct(b';') => {
                lead = None;
                in_from.clear();
                in_from.push(false);
                continue;
            }
            _ => {}
        }
        if lead.is_none() && t.kind != Kind::Punct(b'(') {
            lead = Some(t);
        }
        let depth_from = in_from.last_mut();
        if t.kind == Kind::Word {
            if is_kw(sql, t, "from") || is_kw(sql, t, "join") {
                if let Some(f) = depth_from {
                    *f = true;
                }
            } else if ENDS_FROM.iter().any(|k| is_kw(sql, t, k))
                && let Some(f) = depth_from
            {
                *f = false;
            }
        }
        if is_quoted_view(sql, t) {
            refs.mentioned = true;
            continue;
        }
        if !is_view(sql, t) {
            continue;
        }
        refs.mentioned = true;
        if let Some(span) = reference_at(sql, &toks, i, lead, &in_from) {
            refs.spans.push(span);
        }
    }
    refs
}

/// The reference whose name is token `i`, when it is one to rewrite.
fn reference_at(
    sql: &str,
    toks: &[Tok],
    i: usize,
    lead: Option<Tok>,
    in_from: &[bool],
) -> Option<Span> {
    let tok = |j: Option<usize>| j.and_then(|j| toks.get(j)).copied();
    let name = toks.get(i).copied()?;
    let lead = lead?;
    if !READERS.iter().any(|k| is_kw(sql, lead, k)) {
        return None;
    }
    // A column qualifier (`pg_prepared_statements.name`) is no FROM item.
    if tok(Some(i + 1)).is_some_and(|t| t.kind == Kind::Punct(b'.')) {
        return None;
    }
    let mut start = i;
    if tok(i.checked_sub(1)).is_some_and(|t| t.kind == Kind::Punct(b'.')) {
        let schema = tok(i.checked_sub(2))?;
        if !is_kw(sql, schema, "pg_catalog") {
            return None;
        }
        start = i - 2;
    }
    let before = tok(start.checked_sub(1))?;
    let table = is_kw(sql, before, "table");
    // `DELETE FROM pg_prepared_statements` is the server's to refuse.
    let deletes = tok(start.checked_sub(2)).is_some_and(|t| is_kw(sql, t, "delete"));
    let from_item = (is_kw(sql, before, "from") && !deletes)
        || is_kw(sql, before, "join")
        || is_kw(sql, before, "lateral")
        || before.kind == Kind::Punct(b',') && in_from.last() == Some(&true);
    if !from_item && !table {
        return None;
    }
    let aliased = !table
        && tok(Some(i + 1)).is_some_and(|t| match t.kind {
            Kind::Quoted => true,
            Kind::Word => !NOT_ALIAS.iter().any(|k| is_kw(sql, t, k)),
            _ => false,
        });
    Some(Span {
        start: if table {
            before.start
        } else {
            toks.get(start)?.start
        },
        end: name.end,
        aliased,
        table,
    })
}

#[cfg(test)]
#[path = "pps_tests.rs"]
mod tests;
