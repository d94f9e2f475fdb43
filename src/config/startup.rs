//! What a configuration lacks to serve anyone, said before pgsluice starts: with no
//! database every login would fail, so pgsluice refuses to start unless told to
//! (`--allow-empty`, `general.allow_empty`); with no users, it starts and warns.

use std::path::Path;

use super::{AuthType, Config};

impl Config {
    /// `Err` naming what is missing when no database is configured and empty starts are
    /// not allowed (`allow_empty` from the command line, or `general.allow_empty`).
    /// `file` is the configuration file read, if any.
    pub fn check_servable(&self, file: Option<&Path>, allow_empty: bool) -> Result<(), String> {
        if !self.databases.is_empty() || allow_empty || self.general.allow_empty {
            return Ok(());
        }
        let source = match file {
            None => "no configuration file was given (--config FILE or PGSLUICE_CONFIG) \
                     and the environment names no database"
                .to_string(),
            Some(p) => format!(
                "{} has no [databases.NAME] section and the environment names none",
                p.display()
            ),
        };
        let users = if self.users.is_empty() {
            ", and no [[users]] either"
        } else {
            ""
        };
        Err(format!(
            "nothing to serve: {source}{users}, so every login would fail. Add a database \
             (a [databases.NAME] section with primary = \"host:port\", or \
             PGSLUICE_DATABASES__NAME__PRIMARY=host:port) and a user ([[users]] with name \
             and password, or PGSLUICE_USERS__NAME__PASSWORD), or start anyway with \
             --allow-empty (general.allow_empty = true). `pooler.toml.example` documents \
             every key."
        ))
    }

    /// What will make logins fail although pgsluice starts, to log at WARN.
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.databases.is_empty() {
            out.push(
                "no database is configured (started with allow_empty): every login will \
                 fail with 3D000 until one is added and the configuration reloaded"
                    .to_string(),
            );
        }
        if self.users.is_empty() && self.auth.auth_type != AuthType::Trust {
            out.push(
                "no [[users]] configured: every login will fail with 28P01 (add a [[users]] \
                 entry, or PGSLUICE_USERS__NAME__PASSWORD)"
                    .to_string(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_with_env(text, std::iter::empty()).unwrap()
    }

    #[test]
    fn no_database_is_refused_unless_allowed() {
        let empty = config("");
        let err = empty.check_servable(None, false).unwrap_err();
        assert!(
            err.contains("no configuration file") && err.contains("no [[users]]"),
            "{err}"
        );
        assert!(err.contains("--allow-empty"), "{err}");
        let err = empty
            .check_servable(Some(Path::new("/etc/pooler.toml")), false)
            .unwrap_err();
        assert!(
            err.contains("/etc/pooler.toml has no [databases.NAME]"),
            "{err}"
        );
        assert!(empty.check_servable(None, true).is_ok());
        assert!(
            config("[general]\nallow_empty = true\n")
                .check_servable(None, false)
                .is_ok()
        );
        assert_eq!(empty.startup_warnings().len(), 2);
    }

    #[test]
    fn database_without_users_starts_with_a_warning() {
        let c = config("[databases.app]\nprimary = \"127.0.0.1:5432\"\n");
        assert!(c.check_servable(None, false).is_ok());
        let w = c.startup_warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("28P01"), "{w:?}");
    }
}
