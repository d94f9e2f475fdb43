//! The `pooler.toml` being written: settings per section, each with an optional comment
//! saying where it came from, and the notes about what could not come along.

use std::fmt::Write;

/// A section of pooler.toml.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Section {
    General,
    Auth,
    Metrics,
    /// `[tls]`: client-facing TLS.
    Tls,
    /// The `[[users]]` entry at this position.
    User(usize),
    /// The `[databases.NAME]` table at this position.
    Database(usize),
}

enum Line {
    Set {
        key: String,
        value: toml::Value,
        from: Option<String>,
    },
    Note(String),
}

/// Everything the import found, ready to print.
#[derive(Default)]
pub struct Out {
    source: String,
    general: Vec<Line>,
    auth: Vec<Line>,
    metrics: Vec<Line>,
    tls: Vec<Line>,
    users: Vec<(String, Vec<Line>)>,
    databases: Vec<(String, Vec<Line>)>,
    /// PgBouncer's global `server_tls_*`, which pgsluice sets per database: written into
    /// each `[databases.NAME]` table as it is added.
    pub server_tls: Vec<(String, toml::Value, String)>,
}

impl Out {
    pub fn new(source: &str) -> Out {
        Out {
            source: source.to_string(),
            ..Out::default()
        }
    }

    fn lines(&mut self, section: Section) -> &mut Vec<Line> {
        match section {
            Section::General => &mut self.general,
            Section::Auth => &mut self.auth,
            Section::Metrics => &mut self.metrics,
            Section::Tls => &mut self.tls,
            Section::User(i) => &mut self.users[i].1,
            Section::Database(i) => &mut self.databases[i].1,
        }
    }

    /// Sets `key` (replacing an earlier value of it), `from` saying where it came from
    /// when that is not the same key in PgBouncer.
    pub fn set(&mut self, section: Section, key: &str, value: toml::Value, from: Option<String>) {
        let lines = self.lines(section);
        lines.retain(|l| !matches!(l, Line::Set { key: k, .. } if k == key));
        lines.push(Line::Set {
            key: key.to_string(),
            value,
            from,
        });
    }

    /// Whether `key` is set in `section`.
    pub fn has(&mut self, section: Section, key: &str) -> bool {
        self.lines(section)
            .iter()
            .any(|l| matches!(l, Line::Set { key: k, .. } if k == key))
    }

    /// Notes a PgBouncer setting that is not carried over, and why.
    pub fn note(&mut self, section: Section, key: &str, value: &str, line: usize, why: &str) {
        let shown = if key.contains("password") {
            "…"
        } else {
            value
        };
        let text = format!("not carried over: {key} = {shown} (line {line}): {why}");
        self.lines(section).push(Line::Note(text));
    }

    /// A free-form note.
    pub fn remark(&mut self, section: Section, text: String) {
        self.lines(section).push(Line::Note(text));
    }

    /// The `[[users]]` entry for `name`, added if new.
    pub fn user(&mut self, name: &str) -> Section {
        let i = match self.users.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.users.push((name.to_string(), Vec::new()));
                self.users.len() - 1
            }
        };
        Section::User(i)
    }

    /// The `[databases.NAME]` table, with the server TLS settings of `[pgbouncer]`. A
    /// database defined again starts over: the last definition wins, as in PgBouncer.
    /// (Found by the import's fuzz target: two tables of one name made the output
    /// unreadable TOML.)
    pub fn database(&mut self, name: &str) -> Section {
        let sec = match self.databases.iter().position(|(n, _)| n == name) {
            Some(i) => {
                let again = "defined more than once in [databases]: the last definition is \
                             the one carried over, as PgBouncer does";
                if let Some((_, lines)) = self.databases.get_mut(i) {
                    *lines = vec![Line::Note(again.to_string())];
                }
                Section::Database(i)
            }
            None => {
                self.databases.push((name.to_string(), Vec::new()));
                Section::Database(self.databases.len() - 1)
            }
        };
        for (key, value, from) in self.server_tls.clone() {
            self.set(sec, &key, value, Some(from));
        }
        sec
    }

    /// Sets `key` in every `[databases.NAME]` table added so far.
    pub fn apply_to_databases(&mut self, key: &str, value: toml::Value, from: String) {
        for i in 0..self.databases.len() {
            self.set(Section::Database(i), key, value.clone(), Some(from.clone()));
        }
    }

    /// `key` of `[general]`, `[auth]`, `[metrics]` or `[tls]` as a string, if set.
    pub fn text(&mut self, section: Section, key: &str) -> Option<String> {
        self.lines(section).iter().find_map(|l| match l {
            Line::Set { key: k, value, .. } if k == key => value.as_str().map(str::to_string),
            _ => None,
        })
    }

    /// The names in `[auth] key` (a list of strings), if set.
    pub fn auth_list(&self, key: &str) -> Vec<String> {
        self.auth
            .iter()
            .find_map(|l| match l {
                Line::Set { key: k, value, .. } if k == key => value.as_array().cloned(),
                _ => None,
            })
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    /// Whether a `[[users]]` entry `name` exists.
    pub fn has_user(&self, name: &str) -> bool {
        self.users.iter().any(|(n, _)| n == name)
    }

    /// The pooler.toml text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# pooler.toml imported from {} by `pgsluice import-pgbouncer` ({}).\n\
             # Every setting that could be carried over is below; each one that could not is\n\
             # a comment saying why. Check the result with:\n\
             #   pgsluice --check-config --config pooler.toml\n\
             # pooler.toml.example documents every key and its default.",
            comment_text(&self.source),
            env!("CARGO_PKG_VERSION")
        );
        section(&mut s, "[general]", &self.general);
        section(&mut s, "[auth]", &self.auth);
        if !self.metrics.is_empty() {
            section(&mut s, "[metrics]", &self.metrics);
        }
        if !self.tls.is_empty() {
            section(&mut s, "[tls]", &self.tls);
        }
        for (name, lines) in &self.users {
            let mut all = vec![Line::Set {
                key: "name".into(),
                value: toml::Value::String(name.clone()),
                from: None,
            }];
            all.extend(lines.iter().map(Line::clone_line));
            section(&mut s, "[[users]]", &all);
        }
        if self.databases.is_empty() {
            s.push_str(
                "\n# No database was carried over. Add one, e.g.\n\
                 # [databases.app]\n# primary = \"127.0.0.1:5432\"\n\
                 # (or PGSLUICE_DATABASES__APP__PRIMARY=127.0.0.1:5432): pgsluice refuses\n\
                 # to start with no database unless given --allow-empty.\n",
            );
        }
        for (name, lines) in &self.databases {
            section(&mut s, &format!("[databases.{}]", key_text(name)), lines);
        }
        s
    }
}

impl Line {
    fn clone_line(&self) -> Line {
        match self {
            Line::Set { key, value, from } => Line::Set {
                key: key.clone(),
                value: value.clone(),
                from: from.clone(),
            },
            Line::Note(t) => Line::Note(t.clone()),
        }
    }
}

fn section(s: &mut String, header: &str, lines: &[Line]) {
    let _ = writeln!(s, "\n{header}");
    for line in lines {
        match line {
            Line::Set { key, value, from } => {
                let _ = write!(s, "{} = {value}", key_text(key));
                if let Some(f) = from {
                    let _ = write!(s, "  # from {}", comment_text(f));
                }
                s.push('\n');
            }
            Line::Note(t) => {
                let _ = writeln!(s, "# {}", comment_text(t));
            }
        }
    }
}

/// Text for a one-line TOML comment, which may hold no control character but tab: a
/// line break becomes a space, any other control character its escape (`\u{0}`).
/// (Found by the import's fuzz target: a NUL in a pgbouncer.ini value made the output
/// unreadable.)
fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_debug()),
            c => out.push(c),
        }
    }
    out
}

/// A TOML key: bare when it can be, quoted otherwise.
fn key_text(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        // A basic string, always: the toml crate may write a value as a multi-line literal
        // ('''...'''), which is no key (found by the import's fuzz target: a database
        // named `\'`).
        let mut s = String::with_capacity(key.len() + 2);
        s.push('"');
        for c in key.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => s.push(c),
            }
        }
        s.push('"');
        s
    }
}
