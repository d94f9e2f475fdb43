//! Cache keys for statement text: tokens with literals replaced by `?`, comments dropped.

use super::lexer::{Kind, Lexer};

/// A cache key for `sql`: its tokens with every literal (string, number, `$n`) replaced by
/// `?` and comments dropped, so that queries differing only in their constants share one
/// entry. `None` when the text has an unterminated quote (let the parser judge it).
pub fn normalize(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    normalize_into(sql, &mut out).then_some(out)
}

/// [`normalize`] into a reused buffer; false when there is no key.
pub fn normalize_into(sql: &str, out: &mut String) -> bool {
    out.clear();
    for t in Lexer::new(sql) {
        let piece = match t.kind {
            Kind::Literal => "?",
            Kind::Unterminated => return false,
            // A span off a character boundary would be a lexer bug: no key rather than a
            // key shared with another text.
            _ => match sql.get(t.start..t.end) {
                Some(piece) => piece,
                None => return false,
            },
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    true
}
