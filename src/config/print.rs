//! `pgsluice --print-config`: the effective configuration (defaults, file and environment
//! together) as TOML, with every secret masked.

use super::{Config, ConfigError};

/// What a secret's value is printed as.
pub const MASK: &str = "********";

impl Config {
    /// The configuration as TOML that `--config` would read back, with passwords (and any
    /// other key whose name says it holds a secret) replaced by [`MASK`]. The `*_file` keys
    /// stay: a path is not a secret.
    pub fn to_masked_toml(&self) -> Result<String, ConfigError> {
        let mut value = toml::Value::try_from(self)
            .map_err(|e| ConfigError::Parse(format!("cannot print the configuration: {e}")))?;
        drop_read_from_files(&mut value);
        mask(&mut value);
        toml::to_string(&value)
            .map_err(|e| ConfigError::Parse(format!("cannot print the configuration: {e}")))
    }
}

/// Whether a key's value is a secret.
pub fn is_secret_key(key: &str) -> bool {
    !key.ends_with("_file")
        && (key == "password" || key.ends_with("_password") || key.contains("secret"))
}

/// A value read from its `*_file` key is printed as that key only, so the output reads
/// back (a key and its file together are refused).
fn drop_read_from_files(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            let read: Vec<String> = t
                .keys()
                .filter_map(|k| k.strip_suffix("_file"))
                .filter(|k| is_secret_key(k))
                .map(str::to_string)
                .collect();
            for k in read {
                t.remove(&k);
            }
            t.iter_mut().for_each(|(_, v)| drop_read_from_files(v));
        }
        toml::Value::Array(items) => items.iter_mut().for_each(drop_read_from_files),
        _ => {}
    }
}

fn mask(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                if is_secret_key(k) && v.is_str() {
                    *v = toml::Value::String(MASK.into());
                } else {
                    mask(v);
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_rest_reads_back() {
        let text = r#"
[general]
pool_mode = "session"
[[users]]
name = "app"
password = "app_pw"
server_password = "srv_pw"
[databases.app]
primary = "127.0.0.1:5432"
replicas = ["127.0.0.1:5433", { addr = "127.0.0.1:5434", weight = 2 }]
"#;
        let c = Config::from_toml_with_env(text, std::iter::empty()).unwrap();
        let out = c.to_masked_toml().unwrap();
        assert!(!out.contains("app_pw") && !out.contains("srv_pw"), "{out}");
        assert_eq!(out.matches(MASK).count(), 2, "{out}");
        let back = Config::from_toml_with_env(&out, std::iter::empty()).unwrap();
        assert_eq!(back.general.pool_mode, c.general.pool_mode);
        assert_eq!(back.databases["app"].replicas, c.databases["app"].replicas);
        assert_eq!(back.routing.max_replica_lag, c.routing.max_replica_lag);
    }
}
