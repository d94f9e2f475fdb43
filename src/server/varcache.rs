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
    /// How many of the names are custom (hold a dot): most sessions have none, and a
    /// server's release asks on every transaction (`ServerState::keep_placeholders`).
    custom: u32,
}

impl Gucs {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether a custom setting (a name with a dot) is held.
    #[inline]
    pub fn has_custom(&self) -> bool {
        self.custom > 0
    }

    pub fn set(&mut self, name: String, set_sql: String, reset_sql: String) {
        self.insert(name, Setting { set_sql, reset_sql });
    }

    pub fn remove(&mut self, name: &str) {
        if self.map.remove(name).is_some() && name.contains('.') {
            self.custom -= 1;
        }
    }

    fn insert(&mut self, name: String, setting: Setting) {
        let custom = name.contains('.');
        if self.map.insert(name, setting).is_none() && custom {
            self.custom += 1;
        }
    }

    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.map.get(name)
    }

    /// The names of the settings held, lowercase.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
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
        self.insert(name, Setting { set_sql, reset_sql });
    }

    /// The statements that turn a server holding `from` into one holding `to`, in the
    /// order that reproduces `to`, each with the setting it changes (`None` for the
    /// return to the login user), or an empty list when nothing differs.
    ///
    /// Session authorization and role depend on each other and on privileges: `SET
    /// SESSION AUTHORIZATION` resets the role, and while a non-superuser's authorization
    /// is in force a superuser-only setting cannot be reset. So a server holding either is
    /// first taken back to the login user (`RESET ROLE; RESET SESSION AUTHORIZATION`, which
    /// the login user may always do), the other settings are applied, and the client's
    /// session authorization and role come last, in that order.
    pub fn replay(from: &Gucs, to: &Gucs) -> Vec<(Option<String>, String)> {
        const IDENTITY: [&str; 2] = ["session_authorization", "role"];
        let plain = |n: &str| !IDENTITY.contains(&n);
        let mut other = Vec::new();
        for (name, setting) in &from.map {
            if plain(name) && !to.map.contains_key(name) {
                other.push((Some(name.clone()), setting.reset_sql.clone()));
            }
        }
        for (name, setting) in &to.map {
            if plain(name) && from.map.get(name) != Some(setting) {
                other.push((Some(name.clone()), setting.set_sql.clone()));
            }
        }
        let identity_differs = IDENTITY.iter().any(|n| from.map.get(*n) != to.map.get(*n));
        let from_has_identity = IDENTITY.iter().any(|n| from.map.contains_key(*n));
        if !identity_differs && (other.is_empty() || !from_has_identity) {
            return other;
        }
        let mut sql = Vec::with_capacity(other.len() + 4);
        if from_has_identity {
            sql.push((None, "RESET ROLE".to_string()));
            sql.push((None, "RESET SESSION AUTHORIZATION".to_string()));
        }
        sql.extend(other);
        for name in IDENTITY {
            if let Some(s) = to.map.get(name) {
                sql.push((Some(name.to_string()), s.set_sql.clone()));
            }
        }
        sql
    }

    /// [`Gucs::replay`] as one string (`;`-separated), `None` when nothing differs.
    pub fn diff_sql(from: &Gucs, to: &Gucs) -> Option<String> {
        let stmts: Vec<String> = Gucs::replay(from, to).into_iter().map(|(_, s)| s).collect();
        (!stmts.is_empty()).then(|| stmts.join("; "))
    }

    /// `self` with the settings named in `names` as `other` has them (or absent).
    pub fn with_from(&self, other: &Gucs, names: &[String]) -> Gucs {
        let mut g = self.clone();
        for n in names {
            match other.map.get(n) {
                Some(s) => g.insert(n.clone(), s.clone()),
                None => g.remove(n),
            }
        }
        g
    }
}

/// Parameters the server reports with ParameterStatus whose whole value a SET may change
/// only in part, or spell differently than it stores it.
const REPORTED: &[&str] = &[
    "datestyle",
    "intervalstyle",
    "timezone",
    "client_encoding",
    "application_name",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

/// The statement that re-applies a reported parameter's whole value, `None` for a
/// parameter not re-applied that way (session authorization has its own syntax).
pub fn reported_set_sql(name: &str, value: &str) -> Option<String> {
    REPORTED.contains(&name).then(|| {
        format!(
            "SELECT pg_catalog.set_config({}, {}, false)",
            quote_literal(name),
            quote_literal(value)
        )
    })
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

#[cfg(test)]
mod custom_count_tests {
    use super::Gucs;

    #[test]
    fn the_custom_count_follows_the_names() {
        let mut g = Gucs::default();
        assert!(!g.has_custom());
        g.set(
            "work_mem".into(),
            "SET work_mem = 1".into(),
            "RESET work_mem".into(),
        );
        assert!(!g.has_custom());
        g.set("app.x".into(), "SET app.x = 1".into(), "RESET app.x".into());
        g.set("app.x".into(), "SET app.x = 2".into(), "RESET app.x".into());
        g.set_value("app.y", "3");
        assert_eq!(g.custom, 2);
        g.remove("app.x");
        g.remove("app.x");
        g.remove("work_mem");
        assert_eq!(g.custom, 1);
        let other = Gucs::default();
        let h = g.with_from(&other, &["app.y".to_string()]);
        assert!(!h.has_custom());
        let back = h.with_from(&g, &["app.y".to_string()]);
        assert!(back.has_custom());
        assert_eq!(back, g);
    }
}
