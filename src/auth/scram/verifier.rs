//! SCRAM-SHA-256 verifiers (stored credentials): parsing, derivation from a password, and
//! the HMAC / Hi() primitives both sides of an exchange use.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::auth::AuthError;

/// The prefix of a SCRAM-SHA-256 verifier string as PostgreSQL stores it.
pub(crate) const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";
/// Salt length and iteration count used when deriving a verifier from a plaintext password.
const DEFAULT_SALT_LEN: usize = 16;
const DEFAULT_ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

/// A stored SCRAM-SHA-256 credential: what the server needs to check a client proof.
#[derive(Clone, Debug)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt (raw bytes).
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let bad = AuthError::InvalidVerifier;
        let rest = s
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or(bad("missing SCRAM-SHA-256$ prefix"))?;
        let (params, keys) = rest.split_once('$').ok_or(bad("missing '$' before keys"))?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or(bad("missing ':' after iterations"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(bad("missing ':' between keys"))?;
        let iterations: u32 = iter
            .parse()
            .map_err(|_| bad("iteration count is not a number"))?;
        if iterations == 0 {
            return Err(bad("iteration count is zero"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| bad("salt is not base64"))?;
        if salt.is_empty() {
            return Err(bad("salt is empty"));
        }
        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_key(stored).ok_or(bad("StoredKey is not 32 bytes of base64"))?,
            server_key: decode_key(server).ok_or(bad("ServerKey is not 32 bytes of base64"))?,
        })
    }

    /// Derives a verifier: SaltedPassword = Hi(password, salt, iterations) (PBKDF2-HMAC-SHA256).
    /// An iteration count of 0 is treated as 1.
    ///
    /// SASLprep: a plain-ASCII password is already its own SASLprep form (or contains
    /// prohibited control characters, in which case PostgreSQL and libpq fall back to the
    /// raw bytes too), so it is exact. A non-ASCII password is used UNNORMALISED because
    /// no SASLprep implementation is available here; it only matches clients whose
    /// SASLprep leaves it unchanged (e.g. already NFKC, no mapped/prohibited characters).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let salted = hi(password.as_bytes(), salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Derives a verifier with a random 16-byte salt and 4096 iterations.
    pub(crate) fn from_password_random_salt(password: &str) -> Self {
        let mut salt = [0u8; DEFAULT_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }
}

/// Formats as `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (`to_string()` gives this).
impl fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{VERIFIER_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// Decodes base64 that must hold exactly 32 bytes.
pub(super) fn decode_key(b64: &str) -> Option<[u8; 32]> {
    STANDARD.decode(b64).ok()?.try_into().ok()
}

/// HMAC-SHA-256 of `msg` under `key`.
pub(crate) fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Hi() from RFC 5802: PBKDF2-HMAC-SHA-256 with a single 32-byte output block.
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&[0, 0, 0, 1]);
    let mut prev = hmac(password, &first);
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(password, &prev);
        out.iter_mut().zip(prev).for_each(|(o, p)| *o ^= p);
    }
    out
}
