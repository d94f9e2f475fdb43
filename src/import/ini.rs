//! PgBouncer's ini dialect: `[section]` headers, `key = value` lines, comments starting
//! with `;` or `#`, and `%include FILE` lines (reported, not followed).

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section it is in, lowercased (`pgbouncer`, `databases`, `users`, ...).
    pub section: String,
    pub key: String,
    pub value: String,
    /// 1-based line number, for messages.
    pub line: usize,
}

/// What was found in the file.
#[derive(Debug, Default)]
pub struct Ini {
    pub entries: Vec<Entry>,
    /// Lines the parser could not read, with their number.
    pub unreadable: Vec<(usize, String)>,
    /// `%include` targets.
    pub includes: Vec<String>,
}

impl Ini {
    /// Parses the text; never fails (what it cannot read is listed in `unreadable`).
    pub fn parse(text: &str) -> Ini {
        let mut ini = Ini::default();
        let mut section = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(target) = line.strip_prefix("%include") {
                ini.includes.push(target.trim().to_string());
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_ascii_lowercase();
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => ini.entries.push(Entry {
                    section: section.clone(),
                    key: k.trim().to_string(),
                    value: v.trim().to_string(),
                    line: i + 1,
                }),
                _ => ini.unreadable.push((i + 1, line.to_string())),
            }
        }
        ini
    }

    /// The entries of one section, in file order.
    pub fn section<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.section == name)
    }
}

/// Splits a libpq-style `key=value key2='quoted value'` string, as PgBouncer's database
/// and user lines are. `None` names the first thing it cannot read.
pub fn parse_connstr(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("expected key=value after {key:?}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') if chars.next_if_eq(&'\'').is_some() => value.push('\''),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quote in {key}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_comments_and_includes() {
        let ini = Ini::parse(
            "; comment\n[databases]\napp = host=db port=5432\n\n[PgBouncer]\n# c\n\
             pool_mode = transaction\n%include /etc/more.ini\nnonsense\n",
        );
        assert_eq!(ini.entries.len(), 2);
        assert_eq!(ini.entries[0].section, "databases");
        assert_eq!(ini.entries[0].value, "host=db port=5432");
        assert_eq!(ini.entries[1].section, "pgbouncer");
        assert_eq!(ini.entries[1].line, 7);
        assert_eq!(ini.includes, vec!["/etc/more.ini"]);
        assert_eq!(ini.unreadable, vec![(9, "nonsense".to_string())]);
    }

    #[test]
    fn connstr_with_quotes() {
        let kv = parse_connstr("host=db port = 5433 dbname='my ''db''' password='a\\'b'").unwrap();
        assert_eq!(
            kv,
            vec![
                ("host".into(), "db".into()),
                ("port".into(), "5433".into()),
                ("dbname".into(), "my 'db'".into()),
                ("password".into(), "a'b".into()),
            ]
        );
        assert!(parse_connstr("host").is_err());
        assert!(parse_connstr("host='x").is_err());
    }
}
