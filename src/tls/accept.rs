//! The client-facing TLS side: a rustls server configuration from `[tls]`.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ServerConfig};

use super::stream::{ClientStream, ClientTls, Stream};
use super::{ALPN, TlsError, VERSIONS, cert, load_certs, load_key, load_roots, provider};
use crate::config::{ClientTlsMode, Tls};

/// Accepts TLS from clients with the certificate and key of one configuration load.
#[derive(Debug)]
pub struct Acceptor {
    config: Arc<ServerConfig>,
    /// `tls-server-end-point` data of our certificate (see [`cert::end_point_hash`]).
    cert_hash: Option<Arc<[u8]>>,
}

impl Acceptor {
    /// Builds the acceptor from `[tls]`; `None` when client TLS is disabled.
    pub fn load(tls: &Tls) -> Result<Option<Acceptor>, TlsError> {
        if tls.client_mode == ClientTlsMode::Disable {
            return Ok(None);
        }
        let certs = load_certs("tls.cert_file", &tls.cert_file)?;
        let key = load_key("tls.key_file", &tls.key_file)?;
        let cert_hash = cert::end_point_hash(certs[0].as_ref()).map(Arc::from);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| rustls_error("tls", e))?;
        let builder = if tls.ca_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = load_roots("tls.ca_file", &tls.ca_file)?;
            // Optional at the TLS level: whether a certificate is required is decided at
            // login, so a client without one gets a PostgreSQL error, not a TLS alert.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls {
                key: "tls.ca_file".into(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| rustls_error("tls.key_file", e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(Some(Acceptor {
            config: Arc::new(config),
            cert_hash,
        }))
    }

    /// Runs the TLS handshake on a client's socket.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<ClientStream> {
        let io = tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(tcp)
            .await?;
        Ok(Stream::Tls(Box::new(ClientTls {
            io,
            cert_hash: self.cert_hash.clone(),
        })))
    }
}

/// Whether the client negotiated ALPN `postgresql` (required for direct TLS).
pub fn negotiated_postgresql(stream: &ClientStream) -> bool {
    match stream {
        Stream::Tls(t) => t.io.get_ref().1.alpn_protocol() == Some(ALPN),
        Stream::Plain(_) | Stream::Unix(_) | Stream::Looped(_) => false,
    }
}

fn rustls_error(key: &str, e: rustls::Error) -> TlsError {
    TlsError::Rustls {
        key: key.into(),
        reason: e.to_string(),
    }
}
