//! Session settings (GUCs) as pgsluice tracks them, and the SQL that moves a server
//! connection from one set of settings to another.
//!
//! A `Gucs` holds what a session changed relative to the server's defaults: one entry per
//! parameter with the statement that applies it and the one that undoes it. Comparing a
//! client's `Gucs` with the one a server connection last had tells what to replay.

use std::collections::BTreeMap;

/// One applied setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Re-applies the setting, e.g. `SET search_path TO 'a'`.
    pub set_sql: String,
    /// Undoes it, e.g. `RESET search_path`.
    pub reset_sql: String,
}

/// Settings a session holds beyond the server's defaults, keyed by lowercase name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gucs {
    map: BTreeMap<String, Setting>,
}

impl Gucs {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn set(&mut self, name: String, set_sql: String, reset_sql: String) {
        self.map.insert(name, Setting { set_sql, reset_sql });
    }

    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.map.get(name)
    }

    /// Adds a startup parameter as a setting.
    ///
    /// It is replayed with `set_config`, which takes the value as the server took it from
    /// the startup packet: `SET search_path TO 'a,b'` would name one schema called `a,b`.
    pub fn set_value(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        let ident = quote_ident(&name);
        let set_sql = format!(
            "SELECT pg_catalog.set_config({}, {}, false)",
            quote_literal(&name),
            quote_literal(value)
        );
        let reset_sql = format!("RESET {ident}");
        self.map.insert(name, Setting { set_sql, reset_sql });
    }

    /// The statements that turn a server holding `from` into one holding `to`, joined by
    /// `;`, or `None` when nothing differs.
    pub fn diff_sql(from: &Gucs, to: &Gucs) -> Option<String> {
        let mut sql = String::new();
        for (name, setting) in &from.map {
            if !to.map.contains_key(name) {
                push_stmt(&mut sql, &setting.reset_sql);
            }
        }
        for (name, setting) in &to.map {
            if from.map.get(name) != Some(setting) {
                push_stmt(&mut sql, &setting.set_sql);
            }
        }
        (!sql.is_empty()).then_some(sql)
    }
}

fn push_stmt(sql: &mut String, stmt: &str) {
    if !sql.is_empty() {
        sql.push_str("; ");
    }
    sql.push_str(stmt);
}

/// Quotes an identifier unless it is a plain lowercase (possibly dotted) name.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A standard-conforming string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_sets_and_resets() {
        let mut a = Gucs::default();
        a.set_value("search_path", "a");
        a.set_value("TimeZone", "UTC");
        let mut b = Gucs::default();
        b.set_value("timezone", "UTC");
        b.set_value("application_name", "x'y");
        let sql = Gucs::diff_sql(&a, &b).unwrap();
        assert_eq!(
            sql,
            "RESET search_path; SELECT pg_catalog.set_config('application_name', 'x''y', false)"
        );
        assert_eq!(Gucs::diff_sql(&b, &b), None);
    }

    #[test]
    fn odd_names_are_quoted() {
        assert_eq!(quote_ident("my.param"), "my.param");
        assert_eq!(quote_ident("Weird\"x"), "\"Weird\"\"x\"");
    }
}
