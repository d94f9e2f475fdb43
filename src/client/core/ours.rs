//! pgsluice's own session settings, `SET pgsluice.route = primary|replica|auto` and
//! `SET pgsluice.min_lsn = '<lsn>'` (and `RESET` of either): recognised in a Query,
//! answered by pgsluice, never forwarded.

use crate::protocol;

/// A `SET pgsluice.x = v` / `RESET pgsluice.x` Query: the lowercase name and the value
/// (`None` for RESET or `DEFAULT`).
#[derive(Debug, PartialEq, Eq)]
pub struct Ours {
    pub name: String,
    pub value: Option<String>,
}

/// Whether the body of a Query frame is one of ours. Every query passes here: it is
/// rejected on bytes, before any UTF-8 check or parse.
pub fn ours(query_body: &[u8]) -> Option<Ours> {
    let start = query_body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = query_body.get(start..)?;
    let verb = if rest.len() > 4 && rest.get(..3)?.eq_ignore_ascii_case(b"set") {
        3
    } else if rest.len() > 6 && rest.get(..5)?.eq_ignore_ascii_case(b"reset") {
        5
    } else {
        return None;
    };
    let after = rest.get(verb..)?;
    let name_at = after.iter().position(|b| !b.is_ascii_whitespace())?;
    let name = after.get(name_at..name_at + 9)?;
    if name_at == 0 || !name.eq_ignore_ascii_case(b"pgsluice.") {
        return None;
    }
    parse(protocol::cstr(query_body)?.0)
}

/// `SET pgsluice.x {=|TO} value` or `RESET pgsluice.x` as a whole query. Works on `char`
/// boundaries throughout: any text a client sends is safe here.
pub fn parse(sql: &str) -> Option<Ours> {
    let s = sql.trim().trim_end_matches(';').trim();
    let (verb, rest) = s.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let prefix = rest.get(..9)?;
    if !prefix.eq_ignore_ascii_case("pgsluice.") {
        return None;
    }
    if verb.eq_ignore_ascii_case("reset") {
        let name = rest.trim();
        return (!name.contains(char::is_whitespace)).then(|| Ours {
            name: name.to_ascii_lowercase(),
            value: None,
        });
    }
    if !verb.eq_ignore_ascii_case("set") {
        return None;
    }
    let (name, after) = rest
        .split_once(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or((rest, ""));
    // `split_once` dropped the separator; put an `=` back to look at it.
    let sep_is_eq = rest.get(name.len()..).is_some_and(|r| r.starts_with('='));
    let mut value = if sep_is_eq { after } else { after.trim_start() };
    if !sep_is_eq {
        if let Some(v) = value.strip_prefix('=') {
            value = v;
        } else if value.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("to"))
            && value
                .get(2..)
                .is_some_and(|r| r.starts_with(char::is_whitespace) || r.starts_with('\''))
        {
            value = value.get(2..)?;
        } else {
            return None;
        }
    }
    let value = value.trim();
    if value.is_empty() || value.contains(';') {
        return None;
    }
    let value = value.trim_matches('\'');
    Some(Ours {
        name: name.to_ascii_lowercase(),
        value: (!value.eq_ignore_ascii_case("default")).then(|| value.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(sql: &str) -> Option<(String, Option<String>)> {
        parse(sql).map(|o| (o.name, o.value))
    }

    #[test]
    fn our_settings() {
        assert_eq!(
            p("SET pgsluice.route = primary"),
            Some(("pgsluice.route".into(), Some("primary".into())))
        );
        assert_eq!(
            p("set PGSLUICE.min_lsn to '0/16B3748';"),
            Some(("pgsluice.min_lsn".into(), Some("0/16B3748".into())))
        );
        assert_eq!(
            p("SET pgsluice.route=replica"),
            Some(("pgsluice.route".into(), Some("replica".into())))
        );
        assert_eq!(
            p("RESET pgsluice.route"),
            Some(("pgsluice.route".into(), None))
        );
        assert_eq!(
            p("SET pgsluice.route TO DEFAULT"),
            Some(("pgsluice.route".into(), None))
        );
        assert_eq!(p("SET search_path = a"), None);
        assert_eq!(p("SET pgsluice.route = a; SELECT 1"), None);
        assert_eq!(p("SET pgsluice.route tomorrow"), None);
    }

    #[test]
    fn multibyte_text_never_panics() {
        // Issue 11: a multibyte character where `to` is looked for.
        assert_eq!(p("SET pgsluice.route €x"), None);
        assert_eq!(p("SET pgsluice.route t€"), None);
        assert_eq!(p("SET pgsluic€"), None);
        assert_eq!(p("SET €€€€€€€€€€€€"), None);
        assert_eq!(
            p("SET pgsluice.€ = 1"),
            Some(("pgsluice.€".into(), Some("1".into())))
        );
        for s in [
            "SET pgsluice.route €x",
            "RESET pgsluice.€",
            "SET pgsluice.r\u{301} = \u{301}",
        ] {
            let mut q = s.as_bytes().to_vec();
            q.push(0);
            let _ = ours(&q);
        }
    }
}
