//! A small SQL lexer: words, quoted identifiers, literals (strings, dollar quotes,
//! numbers) and punctuation, skipping whitespace and comments. It never panics on
//! unterminated or invalid input.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Unquoted identifier or keyword.
    Word,
    /// Terminated `"quoted identifier"`.
    Quoted,
    /// String, dollar-quoted string, number or `$n` parameter.
    Literal,
    /// A string or quoted identifier running to the end of the text.
    Unterminated,
    /// Any other single byte.
    Punct(u8),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Tok {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Splits SQL text into tokens, skipping whitespace and comments. Token bounds
/// always fall on char boundaries: only ASCII bytes start or end a token.
#[derive(Clone)]
pub(super) struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    /// A `/*` comment ran to the end of the text (the lexer stopped there).
    open_comment: bool,
}

pub(super) const fn ident_table(digits_and_dollar: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphabetic()
            || c == b'_'
            || c >= 0x80
            || digits_and_dollar && (c.is_ascii_digit() || c == b'$');
        i += 1;
    }
    t
}

pub(super) static IDENT_START: [bool; 256] = ident_table(false);
pub(super) static IDENT_CONT: [bool; 256] = ident_table(true);
pub(super) static SPACE: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'\r' as usize] = true;
    t[0x0b] = true;
    t[0x0c] = true;
    t
};

impl<'a> Lexer<'a> {
    pub(super) fn new(sql: &'a str) -> Self {
        Lexer {
            b: sql.as_bytes(),
            pos: 0,
            open_comment: false,
        }
    }

    /// The lexer over `sql` from byte `pos` (a token's start, or blanks before one).
    pub(super) fn at_pos(sql: &'a str, pos: usize) -> Self {
        Lexer {
            b: sql.as_bytes(),
            pos,
            open_comment: false,
        }
    }

    /// Where the next token or blank starts.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Whether the text ended inside a `/*` comment.
    pub(super) fn open_comment(&self) -> bool {
        self.open_comment
    }

    pub(super) fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// Advances past the bytes of `class` from the current position.
    #[inline]
    pub(super) fn skip_class(&mut self, class: &[bool; 256]) {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        self.pos += rest
            .iter()
            .position(|&c| !class[c as usize])
            .unwrap_or(rest.len());
    }

    /// Skips whitespace and comments; false if a comment runs to the end.
    #[inline]
    pub(super) fn skip_trivia(&mut self) -> bool {
        loop {
            self.skip_class(&SPACE);
            match (self.at(self.pos), self.at(self.pos + 1)) {
                (b'-', b'-') => {
                    let rest = &self.b[self.pos..];
                    let n = rest.iter().position(|&c| c == b'\n' || c == b'\r');
                    self.pos += n.unwrap_or(rest.len());
                }
                (b'/', b'*') => {
                    if !self.block_comment() {
                        self.open_comment = true;
                        return false;
                    }
                }
                _ => return true,
            }
        }
    }

    pub(super) fn block_comment(&mut self) -> bool {
        let mut depth = 0u32;
        while self.pos < self.b.len() {
            match (self.at(self.pos), self.at(self.pos + 1)) {
                (b'/', b'*') => {
                    depth += 1;
                    self.pos += 2;
                }
                (b'*', b'/') => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return true;
                    }
                }
                _ => self.pos += 1,
            }
        }
        false
    }

    /// Scans to past the closing `q`, from just after the opening one.
    pub(super) fn quoted(&mut self, q: u8, backslash: bool) -> Kind {
        while let Some(&c) = self.b.get(self.pos) {
            self.pos += 1;
            if c == b'\\' && backslash {
                self.pos += 1;
            } else if c == q {
                if self.at(self.pos) != q {
                    return if q == b'"' {
                        Kind::Quoted
                    } else {
                        Kind::Literal
                    };
                }
                self.pos += 1;
            }
        }
        self.pos = self.b.len();
        Kind::Unterminated
    }

    pub(super) fn word(&mut self) -> Kind {
        let start = self.pos;
        self.skip_class(&IDENT_CONT);
        if self.pos == start + 1 && self.b[start] | 0x20 == b'e' && self.at(self.pos) == b'\'' {
            self.pos += 1;
            return self.quoted(b'\'', true);
        }
        Kind::Word
    }

    /// At `$`: a `$n` parameter, a `$tag$...$tag$` string, or a lone `$`.
    pub(super) fn dollar(&mut self) -> Kind {
        let start = self.pos;
        self.pos += 1;
        if self.at(self.pos).is_ascii_digit() {
            while self.at(self.pos).is_ascii_digit() {
                self.pos += 1;
            }
            return Kind::Literal;
        }
        while IDENT_START[self.at(self.pos) as usize] || self.at(self.pos).is_ascii_digit() {
            self.pos += 1;
        }
        if self.at(self.pos) != b'$' {
            self.pos = start + 1;
            return Kind::Punct(b'$');
        }
        self.pos += 1;
        let tag = &self.b[start..self.pos];
        let body = &self.b[self.pos..];
        if let Some(i) = find(body, tag) {
            self.pos += i + tag.len();
            Kind::Literal
        } else {
            self.pos = self.b.len();
            Kind::Unterminated
        }
    }

    pub(super) fn number(&mut self) -> Kind {
        while matches!(self.at(self.pos), b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'.') {
            self.pos += 1;
        }
        Kind::Literal
    }
}

impl Iterator for Lexer<'_> {
    type Item = Tok;

    #[inline]
    fn next(&mut self) -> Option<Tok> {
        if !self.skip_trivia() {
            return None;
        }
        let start = self.pos;
        let c = *self.b.get(start)?;
        if c == b'\'' || c == b'"' {
            self.pos += 1;
        }
        let kind = match c {
            b'\'' => self.quoted(b'\'', false),
            b'"' => self.quoted(b'"', false),
            b'$' => self.dollar(),
            b'0'..=b'9' => self.number(),
            b'.' if self.at(start + 1).is_ascii_digit() => self.number(),
            _ if IDENT_START[c as usize] => self.word(),
            _ => {
                self.pos += 1;
                Kind::Punct(c)
            }
        };
        Some(Tok {
            kind,
            start,
            end: self.pos.min(self.b.len()),
        })
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = 0;
    while let Some(off) = hay.get(i..)?.iter().position(|&c| c == first) {
        i += off;
        if hay.get(i..)?.starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}
