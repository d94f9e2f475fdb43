//! `PGSLUICE_SECTION__KEY=value` environment overrides, applied to the parsed TOML tree.
//!
//! Only a variable with at least one `__` whose first segment names a top-level section
//! ([`SECTIONS`]) is configuration. Any other `PGSLUICE_*` variable is left alone: in a
//! Kubernetes namespace with a Service named `pgsluice`, every pod gets `PGSLUICE_PORT=tcp://…`,
//! `PGSLUICE_SERVICE_HOST` and the like, and those must not stop pgsluice from starting.
//!
//! `__` separates path segments (keys themselves contain `_`), segments are lowercased, and
//! the value is read as a TOML value when it parses as one (`7`, `true`, `["a"]`) and as a
//! string otherwise. In an array of tables (`[[users]]`) the next segment picks an entry:
//! a number is its position (`PGSLUICE_USERS__0__NAME=app`), anything else its `name`
//! (`PGSLUICE_USERS__APP__PASSWORD_FILE=/run/secrets/app`), added when there is none.

use super::ConfigError;

/// Prefix of every variable that overrides a config key.
pub const PREFIX: &str = "PGSLUICE_";

/// The top-level sections of the configuration, in the order of [`super::Config`]'s fields
/// (a unit test checks this list against the struct).
pub const SECTIONS: &[&str] = &[
    "general",
    "auth",
    "users",
    "databases",
    "routing",
    "admin",
    "metrics",
    "tls",
    "access",
];

/// Sections that are arrays of tables, whose entries are picked by position or name.
const ARRAYS: &[&str] = &["users", "access"];

/// `PGSLUICE_*` variables of the command line and the log filter, not config keys.
const OWN: &[&str] = &["PGSLUICE_CONFIG", "PGSLUICE_LOG"];

/// What became of one variable.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// It set a key.
    Key,
    /// It is not configuration (no `PGSLUICE_` prefix, one of our own variables).
    NotOurs,
    /// It has the prefix but not the form of a key: ignored, worth a debug line.
    Ignored,
}

/// Applies one variable to the tree.
pub fn apply(root: &mut toml::Table, var: &str, val: &str) -> Result<Applied, ConfigError> {
    let Some(rest) = var.strip_prefix(PREFIX) else {
        return Ok(Applied::NotOurs);
    };
    if OWN.contains(&var) {
        return Ok(Applied::NotOurs);
    }
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.len() < 2 || !SECTIONS.contains(&path[0].as_str()) {
        return Ok(Applied::Ignored);
    }
    if path.iter().any(|s| s.is_empty()) {
        return Err(env_error(var, "empty path segment"));
    }
    set(root, &path, parse_value(val), true).map_err(|reason| env_error(var, &reason))?;
    Ok(Applied::Key)
}

fn env_error(var: &str, reason: &str) -> ConfigError {
    ConfigError::Env {
        var: var.into(),
        reason: reason.into(),
    }
}

/// Sets `path` in `table` to `value`, creating tables on the way (and, at the top,
/// arrays of tables for [`ARRAYS`]).
fn set(
    table: &mut toml::Table,
    path: &[String],
    value: toml::Value,
    top: bool,
) -> Result<(), String> {
    let (seg, rest) = match path.split_first() {
        Some((seg, rest)) if !rest.is_empty() => (seg, rest),
        Some((seg, _)) => {
            table.insert(seg.clone(), value);
            return Ok(());
        }
        None => return Ok(()),
    };
    let default = if top && ARRAYS.contains(&seg.as_str()) {
        toml::Value::Array(Vec::new())
    } else {
        toml::Value::Table(toml::Table::new())
    };
    match table.entry(seg.clone()).or_insert(default) {
        toml::Value::Table(t) => set(t, rest, value, false),
        toml::Value::Array(items) => set_in_array(items, seg, rest, value),
        _ => Err(format!("{seg} is not a section")),
    }
}

/// Picks an entry of an array of tables by position or by `name` (appending one named
/// so when none is), and sets the rest of the path in it.
fn set_in_array(
    items: &mut Vec<toml::Value>,
    seg: &str,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let Some((pick, rest)) = path.split_first() else {
        return Ok(());
    };
    let index = match pick.parse::<usize>() {
        Ok(i) if i <= items.len() => i,
        Ok(i) => {
            return Err(format!(
                "{seg}: entry {i} does not exist ({} so far; number them from 0)",
                items.len()
            ));
        }
        Err(_) => items
            .iter()
            .position(|item| {
                item.get("name")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(pick))
            })
            .unwrap_or(items.len()),
    };
    if index == items.len() {
        let mut entry = toml::Table::new();
        if pick.parse::<usize>().is_err() {
            entry.insert("name".into(), toml::Value::String(pick.clone()));
        }
        items.push(toml::Value::Table(entry));
    }
    if rest.is_empty() {
        items[index] = value;
        return Ok(());
    }
    match &mut items[index] {
        toml::Value::Table(t) => set(t, rest, value, false),
        _ => Err(format!("{seg}: entry {pick} is not a table")),
    }
}

fn parse_value(val: &str) -> toml::Value {
    let doc = format!("v = {val}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(val.into())),
        Err(_) => toml::Value::String(val.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(vars: &[(&str, &str)]) -> Result<toml::Table, ConfigError> {
        let mut root = toml::Table::new();
        for (k, v) in vars {
            apply(&mut root, k, v)?;
        }
        Ok(root)
    }

    #[test]
    fn kubernetes_service_variables_are_not_keys() {
        // What Kubernetes puts into every pod of a namespace with a Service named
        // `pgsluice` exposing ports 6432 (named postgres) and 9930 (named metrics).
        let injected = [
            ("PGSLUICE_SERVICE_HOST", "10.96.12.34"),
            ("PGSLUICE_SERVICE_PORT", "6432"),
            ("PGSLUICE_SERVICE_PORT_POSTGRES", "6432"),
            ("PGSLUICE_SERVICE_PORT_METRICS", "9930"),
            ("PGSLUICE_PORT", "tcp://10.96.12.34:6432"),
            ("PGSLUICE_PORT_6432_TCP", "tcp://10.96.12.34:6432"),
            ("PGSLUICE_PORT_6432_TCP_PROTO", "tcp"),
            ("PGSLUICE_PORT_6432_TCP_PORT", "6432"),
            ("PGSLUICE_PORT_6432_TCP_ADDR", "10.96.12.34"),
            ("PGSLUICE_PORT_9930_TCP", "tcp://10.96.12.34:9930"),
            ("PGSLUICE_PORT_9930_TCP_PROTO", "tcp"),
            ("PGSLUICE_PORT_9930_TCP_PORT", "9930"),
            ("PGSLUICE_PORT_9930_TCP_ADDR", "10.96.12.34"),
        ];
        let mut root = toml::Table::new();
        for (k, v) in injected {
            assert_eq!(apply(&mut root, k, v).unwrap(), Applied::Ignored, "{k}");
        }
        assert!(root.is_empty(), "{root:?}");
    }

    #[test]
    fn unknown_sections_and_own_variables_are_skipped() {
        let mut root = toml::Table::new();
        for k in ["PGSLUICE_GENERAL", "PGSLUICE_NOPE__KEY", "PGSLUICE_X__Y__Z"] {
            assert_eq!(apply(&mut root, k, "1").unwrap(), Applied::Ignored, "{k}");
        }
        for k in ["PGSLUICE_CONFIG", "PGSLUICE_LOG", "PATH"] {
            assert_eq!(apply(&mut root, k, "1").unwrap(), Applied::NotOurs, "{k}");
        }
        assert!(root.is_empty());
    }

    #[test]
    fn users_by_position_and_by_name() {
        let root = tree(&[
            ("PGSLUICE_USERS__0__NAME", "app"),
            ("PGSLUICE_USERS__0__PASSWORD", "pw"),
            (
                "PGSLUICE_USERS__REPORTS__PASSWORD_FILE",
                "/run/secrets/reports",
            ),
            ("PGSLUICE_USERS__APP__POOL_SIZE", "5"),
        ])
        .unwrap();
        let users = root["users"].as_array().unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0]["name"].as_str(), Some("app"));
        assert_eq!(users[0]["pool_size"].as_integer(), Some(5));
        assert_eq!(users[1]["name"].as_str(), Some("reports"));
        assert_eq!(
            users[1]["password_file"].as_str(),
            Some("/run/secrets/reports")
        );
        let err = tree(&[("PGSLUICE_USERS__3__NAME", "x")]).unwrap_err();
        assert!(err.to_string().contains("entry 3"), "{err}");
    }

    #[test]
    fn scalar_in_the_way_is_named() {
        let err = tree(&[
            ("PGSLUICE_GENERAL__POOL_MODE", "session"),
            ("PGSLUICE_GENERAL__POOL_MODE__X", "1"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("pool_mode is not a section"),
            "{err}"
        );
    }
}
