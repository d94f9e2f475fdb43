//! The `[tls]` section (client-facing TLS) and the per-database `server_tls*` settings
//! (server-facing TLS), with their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Whether clients may or must use TLS.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// SSLRequest is answered `N`; direct TLS is refused.
    #[default]
    Disable,
    /// TLS when the client asks for it, plain otherwise.
    Allow,
    /// A client that does not use TLS is refused (FATAL 28000).
    Require,
}

/// Whether TLS clients must present a certificate signed by `tls.ca_file`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCert {
    /// Certificates are asked for only when `ca_file` is set, and optional.
    #[default]
    Off,
    /// Every TLS client must present a certificate that verifies against `ca_file`.
    VerifyCa,
}

/// `[tls]`: TLS between clients and pgsluice. Files are PEM; they are read at start and
/// again on every reload (SIGHUP, RELOAD).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub client_mode: ClientTlsMode,
    /// Certificate chain pgsluice presents (leaf first).
    pub cert_file: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// CA certificates that client certificates must chain to; empty = none asked for.
    pub ca_file: String,
    pub client_cert: ClientCert,
    /// A TLS client with a verified certificate logs in without a password when the
    /// certificate's CN is the user it asks for (or `cert_map` maps the CN to that user).
    pub cert_login: bool,
    /// Certificate CN -> the one user it may log in as, besides a user of the same name.
    pub cert_map: BTreeMap<String, String>,
}

/// How pgsluice talks TLS to a server (libpq's `sslmode` names).
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServerTlsMode {
    /// Plain TCP, no SSLRequest.
    Disable,
    /// TLS when the server accepts it, plain when it answers `N`; no verification.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS or fail; the certificate must chain to `server_ca_file`.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host pgsluice connects to.
    VerifyFull,
}

/// Server TLS settings of one node, after the per-node override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTlsSettings {
    pub mode: ServerTlsMode,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

/// A per-node override (`[databases.NAME.node_tls."host:port"]`); unset keys inherit the
/// database's.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NodeTls {
    pub server_tls: Option<ServerTlsMode>,
    pub server_ca_file: Option<String>,
    pub server_cert_file: Option<String>,
    pub server_key_file: Option<String>,
}

impl Tls {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.client_mode != ClientTlsMode::Disable {
            if self.cert_file.is_empty() {
                return Err(invalid(
                    "tls.cert_file",
                    "required when tls.client_mode is not \"disable\"",
                ));
            }
            if self.key_file.is_empty() {
                return Err(invalid(
                    "tls.key_file",
                    "required when tls.client_mode is not \"disable\"",
                ));
            }
        }
        if self.client_cert == ClientCert::VerifyCa && self.ca_file.is_empty() {
            return Err(invalid(
                "tls.ca_file",
                "required when tls.client_cert = \"verify-ca\"",
            ));
        }
        if self.cert_login && self.ca_file.is_empty() {
            return Err(invalid(
                "tls.ca_file",
                "required when tls.cert_login = true (certificates are verified against it)",
            ));
        }
        Ok(())
    }
}

/// Resolves a node's settings: the node's override, then the database's.
pub(super) fn resolve(db: &super::Database, addr: &str) -> ServerTlsSettings {
    let node = db.node_tls.get(addr);
    let pick = |n: Option<&Option<String>>, d: &Option<String>| {
        n.and_then(|v| v.clone())
            .or_else(|| d.clone())
            .unwrap_or_default()
    };
    ServerTlsSettings {
        mode: node
            .and_then(|n| n.server_tls)
            .or(db.server_tls)
            .unwrap_or_default(),
        ca_file: pick(node.map(|n| &n.server_ca_file), &db.server_ca_file),
        cert_file: pick(node.map(|n| &n.server_cert_file), &db.server_cert_file),
        key_file: pick(node.map(|n| &n.server_key_file), &db.server_key_file),
    }
}

/// Checks one database's server TLS settings and its node overrides.
pub(super) fn validate_db(name: &str, db: &super::Database) -> Result<(), ConfigError> {
    let key = format!("databases.{name}");
    let nodes: Vec<&str> = std::iter::once(db.primary.as_str())
        .chain(db.replicas.iter().map(|r| r.addr()))
        .collect();
    for addr in db.node_tls.keys() {
        if !nodes.contains(&addr.as_str()) {
            return Err(invalid(
                format!("{key}.node_tls.{addr:?}"),
                "is neither the primary nor a replica of this database",
            ));
        }
    }
    for addr in nodes {
        let s = resolve(db, addr);
        if matches!(s.mode, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull)
            && s.ca_file.is_empty()
        {
            return Err(invalid(
                format!("{key}.server_ca_file"),
                format!("required for server_tls = \"verify-ca\"/\"verify-full\" (node {addr})"),
            ));
        }
        if s.cert_file.is_empty() != s.key_file.is_empty() {
            return Err(invalid(
                format!("{key}.server_key_file"),
                format!("server_cert_file and server_key_file go together (node {addr})"),
            ));
        }
    }
    Ok(())
}
