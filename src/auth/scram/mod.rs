//! The server side of a SCRAM-SHA-256 exchange (RFC 5802 / RFC 7677), with channel binding.

mod messages;
mod verifier;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{AuthError, ct_eq};
use messages::{parse_client_final, parse_client_first_bare, split_gs2_header};
pub use verifier::ScramVerifier;
#[cfg(test)]
pub(crate) use verifier::hi;
pub(crate) use verifier::{VERIFIER_PREFIX, hmac};

/// The SASL mechanism without channel binding.
const MECHANISM: &str = "SCRAM-SHA-256";
/// The SASL mechanism with channel binding (`tls-server-end-point`), offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type PostgreSQL defines.
pub const CBIND_TYPE: &str = "tls-server-end-point";
/// Random bytes appended (base64-encoded) to the client nonce, as PostgreSQL does.
const SERVER_NONCE_LEN: usize = 18;

/// Where a [`ScramServer`] is in the exchange.
enum State {
    /// Waiting for SASLInitialResponse.
    Initial,
    /// server-first-message sent; waiting for SASLResponse.
    FirstSent(Exchange),
    /// Finished, successfully or not.
    Done,
}

/// What the client-final step needs to remember from the first step.
struct Exchange {
    /// What the client must echo (base64) in `c=`: its GS2 header, and for
    /// SCRAM-SHA-256-PLUS the certificate hash after it.
    cbind_input: Vec<u8>,
    /// Combined client + server nonce.
    nonce: String,
    /// client-first-message-bare.
    client_first_bare: String,
    /// server-first-message.
    server_first: String,
}

/// One server-side SCRAM-SHA-256 exchange (RFC 5802/7677), as PostgreSQL does it: the
/// username in the client-first-message is ignored, nonce = client nonce + 18 random
/// bytes base64. With a certificate hash (a TLS client), SCRAM-SHA-256-PLUS is offered
/// too (channel binding `tls-server-end-point`), and a client that says "y" (it could
/// bind but thinks we cannot) is refused as a downgrade, as PostgreSQL does.
pub struct ScramServer {
    verifier: ScramVerifier,
    state: State,
    /// `tls-server-end-point` data of the connection, when it is TLS.
    cert_hash: Option<std::sync::Arc<[u8]>>,
    /// The client's ClientKey, known once its proof checked out.
    client_key: Option<[u8; 32]>,
}

impl ScramServer {
    /// The mechanism names offered without TLS.
    pub const MECHANISMS: &'static [&'static str] = &[MECHANISM];
    const MECHANISMS_PLUS: &'static [&'static str] = &[MECHANISM_PLUS, MECHANISM];

    /// Starts an exchange that will check the client against `verifier`.
    pub fn new(verifier: ScramVerifier) -> Self {
        ScramServer {
            verifier,
            state: State::Initial,
            cert_hash: None,
            client_key: None,
        }
    }

    /// Offers channel binding with the connection's certificate hash (`None`: no TLS).
    pub fn with_channel_binding(mut self, cert_hash: Option<std::sync::Arc<[u8]>>) -> Self {
        self.cert_hash = cert_hash;
        self
    }

    /// The mechanism names to offer in AuthenticationSASL.
    pub fn mechanisms(&self) -> &'static [&'static str] {
        if self.cert_hash.is_some() {
            Self::MECHANISMS_PLUS
        } else {
            Self::MECHANISMS
        }
    }

    /// The ClientKey recovered from the client's proof (ClientProof XOR ClientSignature),
    /// once [`ScramServer::client_final`] succeeded: what SCRAM pass-through logs in to
    /// servers with.
    pub fn client_key(&self) -> Option<[u8; 32]> {
        self.client_key
    }

    /// Given the mechanism and the data of SASLInitialResponse, returns the
    /// server-first-message bytes for AuthenticationSASLContinue.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Done),
            State::Initial
        ) {
            return Err(AuthError::OutOfOrder);
        }
        let plus = match mechanism {
            MECHANISM => false,
            MECHANISM_PLUS if self.cert_hash.is_some() => true,
            _ => return Err(AuthError::UnsupportedMechanism(mechanism.to_owned())),
        };
        let msg = std::str::from_utf8(data).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let mut cbind_input = gs2_header.clone().into_bytes();
        match (
            plus,
            gs2_header.as_bytes().first().copied().unwrap_or_default(),
        ) {
            (true, b'p') => {
                if gs2_header != format!("p={CBIND_TYPE},,") {
                    return Err(AuthError::ChannelBinding(
                        "unsupported channel-binding type (only tls-server-end-point)",
                    ));
                }
                cbind_input.extend_from_slice(self.cert_hash.as_deref().unwrap_or_default());
            }
            (true, _) => {
                return Err(AuthError::ChannelBinding(
                    "SCRAM-SHA-256-PLUS chosen without channel-binding data",
                ));
            }
            (false, b'p') => {
                return Err(AuthError::ChannelBinding(
                    "channel binding requested with mechanism SCRAM-SHA-256",
                ));
            }
            (false, b'y') if self.cert_hash.is_some() => {
                return Err(AuthError::ChannelBinding(
                    "client supports channel binding but thinks the server does not \
                     (possible downgrade attack)",
                ));
            }
            _ => {}
        }
        let client_nonce = parse_client_first_bare(bare)?;
        let nonce = format!("{client_nonce}{}", server_nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::FirstSent(Exchange {
            cbind_input,
            nonce,
            client_first_bare: bare.to_owned(),
            server_first,
        });
        Ok(reply)
    }

    /// Given the data of the SASLResponse (client-final-message), verifies the proof
    /// (constant-time) and returns the server-final-message ("v=...") for
    /// AuthenticationSASLFinal. Errors on a wrong proof, a nonce mismatch, a bad
    /// channel-binding echo, or being called out of order.
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::FirstSent(ex) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(AuthError::OutOfOrder);
        };
        let msg = std::str::from_utf8(data).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = parse_client_final(msg, &ex)?;
        let auth_message = format!(
            "{},{},{without_proof}",
            ex.client_first_bare, ex.server_first
        );
        self.check_proof(&auth_message, &proof)?;
        let signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(signature)).into_bytes())
    }

    /// ClientKey = proof XOR HMAC(StoredKey, AuthMessage); accept iff H(ClientKey) == StoredKey.
    fn check_proof(&mut self, auth_message: &str, proof: &[u8; 32]) -> Result<(), AuthError> {
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = *proof;
        client_key
            .iter_mut()
            .zip(signature)
            .for_each(|(k, s)| *k ^= s);
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if ct_eq(&computed, &self.verifier.stored_key) {
            self.client_key = Some(client_key);
            Ok(())
        } else {
            Err(AuthError::BadProof)
        }
    }
}

/// Base64 of fresh random bytes (no ',' can occur in it).
fn server_nonce() -> String {
    let mut raw = [0u8; SERVER_NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut raw);
    STANDARD.encode(raw)
}

#[cfg(test)]
mod tests;
