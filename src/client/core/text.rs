//! What the text of a client's Query or Parse may do: call a function outside the
//! allowlist, change session state, drop or name prepared statements.

use super::Core;
use crate::prepare::SERVER_PREFIX;
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
        // The first byte settles nearly every text before the whole word is compared.
        text.get(start).is_some_and(|b| b | 0x20 == b'd')
            && text
                .get(start..start + 10)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"deallocate"))
    }
}

/// Whether the text of a Query or Parse calls a function outside the allowlist. A byte
/// scan settles almost every text; only a text calling an unlisted word is classified
/// (parsed once per shape, cached). `facts`: the text's, when already scanned.
pub(super) fn calls_unlisted(
    check: &crate::router::Classifier,
    tag: u8,
    frame: &[u8],
    facts: Option<&crate::sql::TextFacts>,
) -> bool {
    if facts.is_some_and(|f| !f.parens) {
        return false;
    }
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
/// text may do to the server's prepared statements ([`Text`]). `facts`: the text's, when
/// already scanned.
pub(super) fn inspect_text(
    state: &mut super::SessionState,
    pin_named: bool,
    tag: u8,
    frame: &[u8],
    facts: Option<&crate::sql::TextFacts>,
) -> Text {
    let body = protocol::body(frame);
    let text = if tag == fe::PARSE {
        let Some((name, rest)) = protocol::cstr_bytes(body) else {
            return Text::Plain;
        };
        if !name.is_empty() && pin_named {
            state.pin(super::Pin::ProtocolPrepare);
        }
        rest
    } else {
        body
    };
    // Most statements have no session effect: the text's facts say so before its end is
    // looked for; without them, the byte prefilter does, before any UTF-8 check.
    if facts.is_some_and(|f| !f.effects) {
        return Text::Plain;
    }
    let Some(sql) = protocol::cstr_bytes(text)
        .map(|(q, _)| q)
        .filter(|sql| facts.map_or_else(|| crate::sql::may_have_effects(sql), |f| f.effects))
        .and_then(|sql| std::str::from_utf8(sql).ok())
    else {
        return Text::Plain;
    };
    if state.on_statement(sql) {
        Text::DropsAll
    } else if may_name_ours(tag, sql) {
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

/// Whether the text of a Query or Parse with session effects (see
/// [`crate::sql::may_have_effects`]) may drop or create a prepared statement under one
/// of pgsluice's server-side names without pgsluice mapping it: every client name is
/// mapped, and a lone `DEALLOCATE` Query is rewritten ([`Mapping::deallocate`]), but a
/// `DEALLOCATE` or `PREPARE` among several statements, or in a Parse, reaches the server
/// as written. The client's and pgsluice's names then share the server's one namespace,
/// so the record of the server's statements may turn wrong: such a server is not
/// handed on.
pub fn may_name_ours(tag: u8, sql: &str) -> bool {
    let prefix = SERVER_PREFIX.as_bytes();
    let named = sql
        .as_bytes()
        .windows(prefix.len())
        .any(|w| w.eq_ignore_ascii_case(prefix));
    named && !(tag == fe::QUERY && deallocate_target(sql).is_some())
}

/// The statement name of a lone `DEALLOCATE [PREPARE] name` (not `ALL`), as PostgreSQL
/// folds it: unquoted names lowercased, quoted ones exact.
pub fn deallocate_target(sql: &str) -> Option<String> {
    let mut words = sql
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("deallocate") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    if words.next().is_some() || name.eq_ignore_ascii_case("all") {
        return None;
    }
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) if !quoted.contains('"') => Some(quoted.to_string()),
        Some(_) => None,
        None if name.contains('"') || name.contains(';') => None,
        None => Some(name.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::deallocate_target;

    #[test]
    fn deallocate_names() {
        assert_eq!(deallocate_target("DEALLOCATE s1"), Some("s1".into()));
        assert_eq!(
            deallocate_target(" deallocate prepare S1 ;"),
            Some("s1".into())
        );
        assert_eq!(deallocate_target("DEALLOCATE \"S1\""), Some("S1".into()));
        assert_eq!(deallocate_target("DEALLOCATE ALL"), None);
        assert_eq!(deallocate_target("DEALLOCATE a; SELECT 1"), None);
        assert_eq!(deallocate_target("SELECT 1"), None);
    }
}
