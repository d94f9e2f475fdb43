//! The TOML configuration: types with their defaults, loading with environment overrides,
//! and validation that names the offending key.

mod auth;
mod databases;
mod endpoints;
mod env;
mod files;
mod general;
mod limits;
mod observe;
mod print;
mod routing;
mod secret;
mod startup;
mod tls;
mod users;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auth::{Auth, AuthType, DEFAULT_AUTH_QUERY};
pub use databases::{Database, NodeSpec};
pub use env::SECTIONS;
pub use general::{General, PoolMode};
pub use limits::{Keepalive, SessionTimeouts, WILDCARD_DB};
pub use observe::{Admin, Metrics};
pub use print::MASK;
pub use routing::{LoadBalance, PrimaryReads, ReadYourWrites, Routing};
pub use secret::read_secret_file;
pub use tls::{ClientCert, ClientTlsMode, NodeTls, ServerTlsMode, ServerTlsSettings, Tls};
pub use users::User;

/// Why a configuration could not be used. Each variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub databases: BTreeMap<String, Database>,
    #[serde(default)]
    pub routing: Routing,
    /// `[admin]`: HTTP endpoints (see `observe.rs`).
    #[serde(default)]
    pub admin: Admin,
    /// `[metrics]`: statistics (see `observe.rs`).
    #[serde(default)]
    pub metrics: Metrics,
    /// `PGSLUICE_*` variables that were not configuration (see `env.rs`), for a debug line
    /// once logging is up.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// `[tls]`: client-facing TLS (see `tls.rs`).
    #[serde(default)]
    pub tls: Tls,
    /// `[[access]]`: access rules, first match wins (see `crate::access`).
    #[serde(default)]
    pub access: Vec<crate::access::Rule>,
    /// Problems worth a WARN that do not stop the config from loading.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Seconds from the config as a `Duration`; `None` when disabled (0).
pub fn secs(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| Duration::from_secs_f64(value))
}

impl Config {
    /// Reads `path` (if any), applies `PGSLUICE_*` environment overrides, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let vars = std::env::vars().filter(|(k, _)| k.starts_with(env::PREFIX));
        let mut config = Config::from_toml_with_env(&text, vars)?;
        config
            .warnings
            .extend(path.and_then(files::permission_warning));
        Ok(config)
    }

    /// Parses TOML text, applies the given `PGSLUICE_*` variables, and validates.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut ignored = Vec::new();
        for (var, val) in vars {
            if env::apply(&mut value, &var, &val)? == env::Applied::Ignored {
                tracing::debug!("ignoring {var}: not a PGSLUICE_<SECTION>__<KEY> setting");
                ignored.push(var);
            }
        }
        let mut config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.ignored_env = ignored;
        secret::resolve_user_files(&mut config.users)?;
        endpoints::resolve(&mut config.databases)?;
        config.validate()?;
        Ok(config)
    }

    /// Who the node monitor connects as.
    pub fn monitor_user(&self) -> Option<&str> {
        self.routing
            .monitor_user
            .as_deref()
            .or_else(|| self.users.first().map(|u| u.name.as_str()))
    }

    /// The configured user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Pool mode for a (database, user): user override, then database, then general.
    pub fn pool_mode(&self, db: &Database, user: Option<&User>) -> PoolMode {
        user.and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(self.general.pool_mode)
    }

    /// Pool size for a (database, user): user override, then database, then general.
    pub fn pool_size(&self, db: &Database, user: Option<&User>) -> usize {
        user.and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(self.general.default_pool_size)
    }
}

/// Splits `host:port`, checking the port.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// Names clients use to reach the admin console (`pgbouncer` for existing tools).
pub const ADMIN_DATABASES: &[&str] = &["pgsluice", "pgbouncer"];

/// Whether `name` is the admin console's virtual database rather than a configured one.
pub fn is_admin_db(name: &str) -> bool {
    ADMIN_DATABASES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml_with_env(text, vars)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.general.pool_mode, PoolMode::Transaction);
        assert_eq!(c.general.default_pool_size, 20);
    }

    #[test]
    fn full_example_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pooler.toml.example"))
                .unwrap();
        let c = load(&text, &[]).unwrap();
        assert!(!c.databases.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[general]\npool_sise = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool_sise"), "{err}");
    }

    #[test]
    fn bad_value_names_key() {
        let err = load("[general]\nlisten_addr = \"nope\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("general.listen_addr"), "{err}");
        let err = load("[databases.x]\nprimary = \"h\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("databases.x.primary"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[general]\npool_mode = \"session\"\n",
            &[
                ("PGSLUICE_GENERAL__POOL_MODE", "statement"),
                ("PGSLUICE_GENERAL__DEFAULT_POOL_SIZE", "7"),
                ("PGSLUICE_DATABASES__APP__PRIMARY", "127.0.0.1:5432"),
                ("PGSLUICE_DATABASES__APP__REPLICAS", "[\"127.0.0.1:5433\"]"),
            ],
        )
        .unwrap();
        assert_eq!(c.general.pool_mode, PoolMode::Statement);
        assert_eq!(c.general.default_pool_size, 7);
        assert_eq!(
            c.databases["app"].replicas,
            vec![NodeSpec::Addr("127.0.0.1:5433".into())]
        );
    }

    #[test]
    fn sections_list_matches_the_struct() {
        // serde names every field it expects when it meets an unknown one.
        let err = load("[no_such_section]\n", &[]).unwrap_err().to_string();
        for s in SECTIONS {
            assert!(
                err.contains(&format!("`{s}`")),
                "{s} is not a section: {err}"
            );
        }
        let expected = err.matches('`').count() / 2 - 1;
        assert_eq!(
            SECTIONS.len(),
            expected,
            "a section is missing from SECTIONS: {err}"
        );
    }

    #[test]
    fn passwords_from_files() {
        let dir = std::env::temp_dir().join(format!("pgsluice-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from_file\n").unwrap();
        std::fs::write(dir.join("srv"), "server_pw").unwrap();
        let pw = dir.join("pw").display().to_string();
        let srv = dir.join("srv").display().to_string();
        let c = load(
            "[[users]]\nname = \"app\"\n",
            &[
                ("PGSLUICE_USERS__APP__PASSWORD_FILE", &pw),
                ("PGSLUICE_USERS__APP__SERVER_PASSWORD_FILE", &srv),
            ],
        )
        .unwrap();
        assert_eq!(c.users[0].password.as_deref(), Some("from_file"));
        assert_eq!(c.users[0].server_password.as_deref(), Some("server_pw"));
        let err = load(
            &format!("[[users]]\nname = \"app\"\npassword = \"x\"\npassword_file = {pw:?}\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("users[0].password_file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_and_access_keys_are_validated_by_name() {
        let db = "[databases.app]\nprimary = \"h:1\"\n";
        let cases = [
            ("[tls]\nclient_mode = \"require\"\n", "tls.cert_file"),
            (
                "[tls]\nclient_mode = \"allow\"\ncert_file = \"/nonexistent.crt\"\nkey_file = \"k\"\n",
                "tls.cert_file",
            ),
            ("[tls]\nclient_cert = \"verify-ca\"\n", "tls.ca_file"),
            ("[tls]\nclient_mode = \"sometimes\"\n", "client_mode"),
            (
                "[[access]]\naddress = \"10.0.0.0/99\"\nmethod = \"trust\"\n",
                "access[0].address",
            ),
            ("[[access]]\nmethod = \"cert\"\n", "access[0].method"),
            ("[auth]\nauth_user = \"ghost\"\n", "auth.auth_user"),
            ("[auth]\nauth_cache_ttl = -1\n", "auth.auth_cache_ttl"),
            (
                "[[users]]\nname = \"u\"\npassword = \"x\"\npassword_file = \"/etc/hostname\"\n",
                "users[0].password_file",
            ),
            (
                "[[users]]\nname = \"u\"\npassword_file = \"/nonexistent\"\n",
                "users[0].password_file",
            ),
        ];
        for (text, key) in cases {
            // Files are read with the TLS material, after the config itself loaded.
            let err = match load(&format!("{text}{db}"), &[]) {
                Err(e) => e.to_string(),
                Ok(c) => match crate::shared::load_tls(&c) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("{text}: accepted"),
                },
            };
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = load(&format!("{db}server_tls = \"verify-full\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("databases.app.server_ca_file"), "{err}");
        let err = load(
            &format!("{db}[databases.app.node_tls.\"x:1\"]\nserver_tls = \"require\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("node_tls"), "{err}");
    }

    #[test]
    fn server_tls_defaults_and_node_overrides() {
        let c = load(
            "[databases.app]\nprimary = \"p:1\"\nreplicas = [\"r:2\"]\nserver_tls = \"require\"\n\
             [databases.app.node_tls.\"r:2\"]\nserver_tls = \"disable\"\n\
             [databases.other]\nprimary = \"p:1\"\n",
            &[],
        )
        .unwrap();
        let app = &c.databases["app"];
        assert_eq!(app.server_tls_for("p:1").mode, ServerTlsMode::Require);
        assert_eq!(app.server_tls_for("r:2").mode, ServerTlsMode::Disable);
        assert_eq!(
            c.databases["other"].server_tls_for("p:1").mode,
            ServerTlsMode::Prefer
        );
        let built = crate::tls::Built::load(&c).unwrap();
        assert_eq!(built.connectors.len(), 3);
        assert!(built.acceptor.is_none());
        assert_eq!(c.auth.auth_query, DEFAULT_AUTH_QUERY);
    }

    #[test]
    fn bad_env_names_variable() {
        let err = load("", &[("PGSLUICE_GENERAL__DEFAULT_POOL_SIZE", "many")]).unwrap_err();
        assert!(err.to_string().contains("default_pool_size"), "{err}");
    }
}

#[cfg(test)]
mod fuzz_tests;
