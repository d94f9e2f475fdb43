//! A token cursor over SQL text with the lookahead helpers the statement handlers use.

use super::lexer::{Kind, Lexer, Tok};
use super::prefilter::eq_kw;

/// A possibly dotted parameter name.
pub(super) struct Name {
    /// Canonical: unquoted parts lowercased, quoted parts verbatim.
    pub(super) canon: String,
    /// The same name as SQL, quoted parts re-quoted.
    pub(super) sql: String,
}

impl Name {
    pub(super) fn is_ours(&self) -> bool {
        let b = self.canon.as_bytes();
        b.len() > 9 && b[..9].eq_ignore_ascii_case(b"pgsluice.")
    }
}

pub(super) fn parse_name(c: &mut Cur) -> Option<Name> {
    let mut name = Name {
        canon: String::new(),
        sql: String::new(),
    };
    loop {
        let t = c.bump()?;
        let s = c.text(t);
        match t.kind {
            Kind::Word => {
                let lower = s.to_ascii_lowercase();
                name.canon.push_str(&lower);
                name.sql.push_str(&lower);
            }
            Kind::Quoted => {
                name.canon.push_str(&unquote_raw(s).replace("\"\"", "\""));
                name.sql.push_str(s);
            }
            _ => return None,
        }
        if !c.eat_punct(b'.') {
            return Some(name);
        }
        name.canon.push('.');
        name.sql.push('.');
    }
}

/// A lexer over `src` with lookahead helpers.
pub(super) struct Cur<'a> {
    pub(super) src: &'a str,
    pub(super) lx: Lexer<'a>,
}

impl<'a> Cur<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Cur::with(src, Lexer::new(src))
    }

    pub(super) fn with(src: &'a str, lx: Lexer<'a>) -> Self {
        Cur { src, lx }
    }

    pub(super) fn text(&self, t: Tok) -> &'a str {
        text(self.src, t)
    }

    pub(super) fn bump(&mut self) -> Option<Tok> {
        self.lx.next()
    }

    pub(super) fn nth(&self, n: usize) -> Option<Tok> {
        self.lx.clone().nth(n)
    }

    pub(super) fn peek(&self) -> Option<Tok> {
        self.nth(0)
    }

    pub(super) fn at_end(&self) -> bool {
        self.peek().is_none()
    }

    pub(super) fn nth_kw(&self, n: usize, kw: &str) -> bool {
        self.nth(n).is_some_and(|t| is_kw(self.src, t, kw))
    }

    pub(super) fn peek_kw(&self, kw: &str) -> bool {
        self.nth_kw(0, kw)
    }

    /// Whether the next token is a parameter name rather than a keyword:
    /// `TO`, `=` or `.` follows it.
    pub(super) fn name_first(&self) -> bool {
        self.nth(1)
            .is_some_and(|t| matches!(t.kind, Kind::Punct(b'=' | b'.')) || is_kw(self.src, t, "to"))
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.peek_kw(kw);
        if hit {
            self.bump();
        }
        hit
    }

    /// Consumes keywords `a b` if both are next.
    pub(super) fn eat_kws(&mut self, a: &str, b: &str) -> bool {
        let hit = self.nth_kw(0, a) && self.nth_kw(1, b);
        if hit {
            self.bump();
            self.bump();
        }
        hit
    }

    pub(super) fn eat_punct(&mut self, p: u8) -> bool {
        let hit = self.peek().is_some_and(|t| t.kind == Kind::Punct(p));
        if hit {
            self.bump();
        }
        hit
    }
}

pub(super) fn is_kw(sql: &str, t: Tok, kw: &str) -> bool {
    matches!(t.kind, Kind::Word)
        && t.end - t.start == kw.len()
        && eq_kw(text(sql, t).as_bytes(), kw.as_bytes())
}

pub(super) fn text(sql: &str, t: Tok) -> &str {
    slice(sql, t.start, t.end)
}

pub(super) fn slice(sql: &str, start: usize, end: usize) -> &str {
    sql.get(start..end).unwrap_or("")
}

/// Inside of a terminated `"..."` token (still with doubled quotes).
pub(super) fn unquote_raw(s: &str) -> &str {
    s.get(1..s.len().saturating_sub(1)).unwrap_or("")
}
