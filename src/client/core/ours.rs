//! pgsluice's own session settings, `SET pgsluice.route = primary|replica|auto` and
//! `SET pgsluice.min_lsn = '<lsn>'` (and `RESET` of either): recognised in a Query,
//! answered by pgsluice, never forwarded.

use bytes::BytesMut;

use super::Core;
use crate::protocol::{self, build};

/// A `SET pgsluice.x = v` / `RESET pgsluice.x` Query: the lowercase name and the value
/// (`None` for RESET or `DEFAULT`).
#[derive(Debug, PartialEq, Eq)]
pub struct Ours {
    pub name: String,
    pub value: Option<String>,
}

impl Core {
    /// Answers `SET pgsluice.*` / `RESET pgsluice.*` itself.
    pub(super) fn answer_ours(&mut self, o: Ours) {
        let mut buf = BytesMut::new();
        let result = match &mut self.route {
            Some(r) => r.set_ours(&o.name, o.value.as_deref()),
            // Without replicas there is nothing to route; accept the settings quietly.
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                build::command_complete(&mut buf, if o.value.is_some() { "SET" } else { "RESET" })
            }
            Err(msg) => build::error(&mut buf, "ERROR", "22023", &msg),
        }
        build::ready_for_query(&mut buf, self.status);
        self.cout.push(buf.freeze());
    }
}

/// Whether the body of a Query frame is one of ours. Every query passes here: it is
/// rejected on bytes, before any UTF-8 check or parse.
#[inline]
pub fn ours(query_body: &[u8]) -> Option<Ours> {
    // Nearly every query starts with a letter other than that of SET or RESET, or with
    // `s` and then not `et` (SELECT, SHOW): settled here, inline.
    let lower = |i: usize| query_body.get(i).map(|b| b | 0x20);
    match query_body.first() {
        Some(c) if c.is_ascii_whitespace() => {}
        Some(c) if c | 0x20 == b'r' => {}
        Some(c) if c | 0x20 == b's' && lower(1) == Some(b'e') && lower(2) == Some(b't') => {}
        _ => return None,
    }
    ours_slow(query_body)
}

fn ours_slow(query_body: &[u8]) -> Option<Ours> {
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

    /// The inline first-bytes test turns away only what the full test would.
    fn quick_agrees(text: &[u8]) {
        let mut q = text.to_vec();
        q.push(0);
        let (fast, full) = (ours(&q), ours_slow(&q));
        assert_eq!(
            fast.map(|o| (o.name, o.value)),
            full.map(|o| (o.name, o.value)),
            "{text:?}"
        );
    }

    #[test]
    fn the_quick_test_agrees_with_the_full_one() {
        for s in [
            "SELECT 1",
            "SET pgsluice.route = primary",
            "set pgsluice.route to replica",
            "sEt pgsluice.route = replica",
            "RESET pgsluice.route",
            "reset pgsluice.route",
            " \t\nSET pgsluice.route = replica",
            "\x0bSET pgsluice.route = replica",
            "\x0cSET pgsluice.route = replica",
            "SHOW pgsluice.route",
            "SETpgsluice.route = x",
            "se",
            "s",
            "",
            "S\u{301}T pgsluice.route = x",
        ] {
            quick_agrees(s.as_bytes());
        }
    }

    #[test]
    fn fuzz_the_quick_test_agrees_with_the_full_one() {
        use proptest::prelude::*;
        // Blanks, then one of our statements in any case, or anything, then anything.
        let blanks = prop::collection::vec(prop::sample::select(&b" \t\n\r\x0b\x0c"[..]), 0..3);
        let lead =
            prop::sample::select(&["SET pgsluice.route = x", "reset pgsluice.y", "se", ""][..]);
        let flips = prop::collection::vec(any::<bool>(), 24);
        let input = (blanks, lead, flips, crate::fuzz::sql_bytes()).prop_map(
            |(mut b, lead, flips, rest)| {
                b.extend(lead.bytes().zip(flips).map(
                    |(c, up)| {
                        if up { c.to_ascii_uppercase() } else { c }
                    },
                ));
                b.extend(rest);
                b
            },
        );
        crate::fuzz::run("ours_quick", 4000, input, |b| {
            quick_agrees(&b);
            Ok(())
        });
    }
}
