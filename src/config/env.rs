//! `PGSLUICE_SECTION__KEY=value` environment overrides, applied to the parsed TOML tree.
//!
//! `__` separates path segments (keys themselves contain `_`), segments are lowercased, and
//! the value is read as a TOML value when it parses as one (`7`, `true`, `["a"]`) and as a
//! string otherwise. `PGSLUICE_CONFIG` and `PGSLUICE_CHECK_CONFIG` belong to the command line.

use super::ConfigError;

/// Prefix of every variable that overrides a config key.
pub const PREFIX: &str = "PGSLUICE_";

const NOT_KEYS: &[&str] = &["PGSLUICE_CONFIG", "PGSLUICE_CHECK_CONFIG", "PGSLUICE_LOG"];

/// Applies one variable to the tree; other variables are ignored.
pub fn apply(root: &mut toml::Table, var: &str, val: &str) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix(PREFIX) else {
        return Ok(());
    };
    if NOT_KEYS.contains(&var) {
        return Ok(());
    }
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError::Env {
            var: var.into(),
            reason: "empty path segment".into(),
        });
    }
    let (last, parents) = path
        .split_last()
        .expect("split yields at least one segment");
    let mut table = root;
    for seg in parents {
        let entry = table
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            reason: format!("{seg} is not a section"),
        })?;
    }
    table.insert(last.clone(), parse_value(val));
    Ok(())
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
