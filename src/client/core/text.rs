//! What the text of a client's Query or Parse may do: call a function outside the
//! allowlist, change session state, drop or name prepared statements.

use super::Core;
use crate::protocol::{self, fe};

impl Core {
    /// Whether a simple Query may be a `DEALLOCATE` of a mapped statement (a cheap prefix
    /// test, so ordinary queries are never copied).
    pub(super) fn may_deallocate(&self, at: usize, len: usize) -> bool {
        let text = self
            .cin
            .get(at + protocol::HEADER_LEN..at + len)
            .unwrap_or_default();
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        text.get(start..start + 10)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"deallocate"))
    }
}

/// Whether the text of a Query or Parse calls a function outside the allowlist. A byte
/// scan settles almost every text; only a text calling an unlisted word is classified
/// (parsed once per shape, cached).
pub(super) fn calls_unlisted(check: &crate::router::Classifier, tag: u8, frame: &[u8]) -> bool {
    let body = protocol::body(frame);
    let text = if tag == fe::PARSE {
        protocol::cstr_bytes(body)
            .and_then(|(_, rest)| protocol::cstr_bytes(rest))
            .map(|(q, _)| q)
    } else {
        protocol::cstr_bytes(body).map(|(q, _)| q)
    };
    let Some(text) = text else {
        return false;
    };
    let unlisted = crate::sql::call_candidates(text)
        .any(|w| std::str::from_utf8(w).map_or(true, |w| !check.allows_word(w)));
    unlisted && std::str::from_utf8(text).is_ok_and(|sql| check.classify(sql).opaque)
}

/// Looks at the SQL of a Query or Parse for session-state effects, and says what the
/// text may do to the server's prepared statements ([`Text`]).
pub(super) fn inspect_text(
    state: &mut super::SessionState,
    pin_named: bool,
    tag: u8,
    frame: &[u8],
) -> Text {
    let body = protocol::body(frame);
    let sql = if tag == fe::PARSE {
        protocol::cstr_bytes(body).and_then(|(name, rest)| {
            if !name.is_empty() && pin_named {
                state.pin(super::Pin::ProtocolPrepare);
            }
            protocol::cstr_bytes(rest).map(|(q, _)| q)
        })
    } else {
        protocol::cstr_bytes(body).map(|(q, _)| q)
    };
    // Most statements have no session effect: the byte prefilter settles them before any
    // UTF-8 check.
    let Some(sql) = sql
        .filter(|sql| crate::sql::may_have_effects(sql))
        .and_then(|sql| std::str::from_utf8(sql).ok())
    else {
        return Text::Plain;
    };
    if state.on_statement(sql) {
        Text::DropsAll
    } else if super::statements::may_name_ours(tag, sql) {
        Text::NamesOurs
    } else {
        Text::Plain
    }
}

/// What a Query's or Parse's text may do to the server's prepared statements.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Text {
    Plain,
    /// It drops every one (DISCARD ALL, DEALLOCATE ALL).
    DropsAll,
    /// It names one of pgsluice's server-side names where pgsluice does not map it.
    NamesOurs,
}
