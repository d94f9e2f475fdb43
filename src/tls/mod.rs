//! TLS with rustls, on both sides.
//!
//! - [`accept`]: the client-facing side: the rustls server configuration built from PEM
//!   files, optional client certificates, ALPN `postgresql` (direct TLS).
//! - [`connect`]: the server-facing side: one connector per node, with libpq's modes
//!   (`disable` .. `verify-full`), SNI and an optional client certificate.
//! - [`cert`]: channel-binding hash and common name of a certificate.
//! - [`stream`]: a connection, plain TCP or TLS, behind one narrow API; [`looped`]: a
//!   client socket of a worker's session loop.
//!
//! Everything here is built when the configuration is loaded (at start and on every
//! reload) and kept beside it in the running snapshot: a reload with a bad file is refused
//! whole and the running one stays.

pub mod accept;
pub mod cert;
pub mod connect;
pub mod looped;
pub mod stream;
mod sys;

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

pub use accept::Acceptor;
pub use connect::Connector;

/// ALPN protocol name PostgreSQL 17 uses (required for direct TLS).
pub const ALPN: &[u8] = b"postgresql";

/// Why TLS material could not be loaded; `key` names the config key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {reason}")]
    File {
        key: String,
        path: String,
        reason: String,
    },
    #[error("{key}: {path}: {reason}")]
    Content {
        key: String,
        path: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Rustls { key: String, reason: String },
}

impl TlsError {
    /// The config key the error is about.
    pub fn key(&self) -> &str {
        match self {
            TlsError::File { key, .. }
            | TlsError::Content { key, .. }
            | TlsError::Rustls { key, .. } => key,
        }
    }
}

/// What the configuration's TLS settings were built into.
#[derive(Clone, Debug, Default)]
pub struct Built {
    /// The client-facing acceptor; `None` when `tls.client_mode = "disable"`.
    pub acceptor: Option<Arc<Acceptor>>,
    /// Per (database, node address).
    pub connectors: BTreeMap<(String, String), Arc<Connector>>,
}

/// The crypto provider: ring, TLS 1.2 and 1.3 only.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(key: &str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        key: key.into(),
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM file; at least one.
pub fn load_certs(key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Content {
            key: key.into(),
            path: path.into(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            key: key.into(),
            path: path.into(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(key: &str, path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Content {
        key: key.into(),
        path: path.into(),
        reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

/// A root store from a PEM file of CA certificates.
fn load_roots(key: &str, path: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots.add(cert).map_err(|e| TlsError::Content {
            key: key.into(),
            path: path.into(),
            reason: format!("unusable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

impl Built {
    /// Reads every certificate and key the configuration names.
    pub fn load(config: &crate::Config) -> Result<Built, TlsError> {
        let acceptor = accept::Acceptor::load(&config.tls)?.map(Arc::new);
        let mut connectors = BTreeMap::new();
        // Nodes with the same settings share one connector (and one read of the files).
        let mut by_settings = BTreeMap::new();
        for (name, db) in &config.databases {
            let addrs = std::iter::once(db.primary.clone())
                .chain(db.replicas.iter().map(|r| r.addr().to_string()));
            for addr in addrs {
                let settings = db.server_tls_for(&addr);
                let connector = match by_settings.get(&settings) {
                    Some(c) => Arc::clone(c),
                    None => {
                        let key = format!("databases.{name}");
                        let c = Arc::new(Connector::load(&key, settings.clone())?);
                        by_settings.insert(settings, c.clone());
                        c
                    }
                };
                connectors.insert((name.clone(), addr), connector);
            }
        }
        Ok(Built {
            acceptor,
            connectors,
        })
    }
}
