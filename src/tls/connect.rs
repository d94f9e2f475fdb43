//! The server-facing TLS side: one connector per node, with libpq's `sslmode` names.
//!
//! - `prefer` and `require` encrypt without checking the certificate (as libpq does),
//!   which stops eavesdroppers but not an active man in the middle;
//! - `verify-ca` checks the chain against `server_ca_file` but not the name;
//! - `verify-full` checks the chain and that the certificate names the host.
//!
//! SNI is sent when the host is a DNS name (rustls sends none for an IP address).

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::stream::{ServerStream, Stream};
use super::{TlsError, VERSIONS, load_certs, load_key, load_roots, provider};
use crate::config::{ServerTlsMode, ServerTlsSettings};

/// How to talk TLS to one node.
#[derive(Debug)]
pub struct Connector {
    pub settings: ServerTlsSettings,
    /// `None` when the mode is `disable`.
    config: Option<Arc<ClientConfig>>,
}

/// Connectors compare by their settings: the same files and mode are the same connector,
/// so a reload that changes nothing does not close idle server connections.
impl PartialEq for Connector {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for Connector {}

impl Connector {
    /// No TLS at all (for callers without a configured connector).
    pub fn disabled() -> Connector {
        Connector {
            settings: ServerTlsSettings {
                mode: ServerTlsMode::Disable,
                ..Default::default()
            },
            config: None,
        }
    }

    /// Reads the files `settings` names; `key` is the database's config key, for errors.
    pub fn load(key: &str, settings: ServerTlsSettings) -> Result<Connector, TlsError> {
        if settings.mode == ServerTlsMode::Disable {
            return Ok(Connector {
                settings,
                config: None,
            });
        }
        let rustls_err = |k: &str, e: rustls::Error| TlsError::Rustls {
            key: format!("{key}.{k}"),
            reason: e.to_string(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| rustls_err("server_tls", e))?;
        let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
            ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull => {
                let k = format!("{key}.server_ca_file");
                let roots = load_roots(&k, &settings.ca_file)?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Rustls {
                            key: k,
                            reason: e.to_string(),
                        })?;
                if settings.mode == ServerTlsMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
            _ => Arc::new(NoVerify(provider())),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = if settings.cert_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let certs = load_certs(&format!("{key}.server_cert_file"), &settings.cert_file)?;
            let pkey = load_key(&format!("{key}.server_key_file"), &settings.key_file)?;
            builder
                .with_client_auth_cert(certs, pkey)
                .map_err(|e| rustls_err("server_key_file", e))?
        };
        Ok(Connector {
            settings,
            config: Some(Arc::new(config)),
        })
    }

    pub fn mode(&self) -> ServerTlsMode {
        self.settings.mode
    }

    /// Runs the TLS handshake with the server at `host` (after its `S`).
    pub async fn handshake(&self, tcp: TcpStream, host: &str) -> std::io::Result<ServerStream> {
        let Some(config) = &self.config else {
            return Ok(Stream::Plain(tcp));
        };
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS server name: {e}"),
            )
        })?;
        let io = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await?;
        Ok(Stream::Tls(Box::new(io)))
    }
}

/// `prefer`/`require`: any certificate; handshake signatures are still checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must verify; a certificate for another name is accepted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
