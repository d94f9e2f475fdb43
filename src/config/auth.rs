//! The `[auth]` section: how clients authenticate, `auth_query`, and the checks of the
//! access rules that depend on it.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, invalid};

/// How clients prove who they are.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum AuthType {
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

/// `[auth]`: how clients authenticate.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    #[serde(rename = "type")]
    pub auth_type: AuthType,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    /// Users not in `[[users]]` are looked up on the server as this user (which must be in
    /// `[[users]]`) with `auth_query`; unset = no lookup.
    pub auth_user: Option<String>,
    /// Returns (name, secret) for `$1`; the secret is a SCRAM verifier or an md5 hash.
    pub auth_query: String,
    /// Seconds a looked-up secret (or its absence) is reused before asking again.
    pub auth_cache_ttl: f64,
}

/// PgBouncer's default `auth_query`.
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename=$1";

impl Default for Auth {
    fn default() -> Self {
        Auth {
            auth_type: AuthType::ScramSha256,
            admin_users: Vec::new(),
            stats_users: Vec::new(),
            auth_user: None,
            auth_query: DEFAULT_AUTH_QUERY.into(),
            auth_cache_ttl: 60.0,
        }
    }
}

impl Config {
    pub(super) fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if let Some(u) = &a.auth_user
            && self.user(u).is_none()
        {
            return Err(invalid(
                "auth.auth_user",
                format!("no [[users]] entry named {u:?}"),
            ));
        }
        if a.auth_query.trim().is_empty() {
            return Err(invalid("auth.auth_query", "must not be empty"));
        }
        if !(0.0..=1e9).contains(&a.auth_cache_ttl) {
            return Err(invalid(
                "auth.auth_cache_ttl",
                "must be between 0 and 1e9 seconds",
            ));
        }
        for (i, r) in self.access.iter().enumerate() {
            crate::access::parse_cidr(&r.address)
                .map_err(|e| invalid(format!("access[{i}].address"), e))?;
            if r.method == crate::access::Method::Cert && self.tls.ca_file.is_empty() {
                return Err(invalid(
                    format!("access[{i}].method"),
                    "\"cert\" needs tls.ca_file to verify client certificates",
                ));
            }
        }
        Ok(())
    }
}
