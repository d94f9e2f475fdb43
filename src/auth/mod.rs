//! Authentication: stored user secrets, the MD5 / SCRAM-SHA-256 server sides (with channel
//! binding), the SCRAM client for pass-through, and `auth_query` look-ups.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod cache;
pub mod md5;
pub mod passthrough;
pub mod scram;
pub mod scram_client;

/// Why an authentication step or a stored secret was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A message from the client could not be parsed.
    #[error("malformed authentication message: {0}")]
    Malformed(&'static str),
    /// A stored SCRAM verifier string could not be parsed.
    #[error("invalid SCRAM verifier: {0}")]
    InvalidVerifier(&'static str),
    /// The client asked for a SASL mechanism we did not offer.
    #[error("unsupported SASL mechanism {0:?}")]
    UnsupportedMechanism(String),
    /// The client required channel binding, or echoed a wrong channel-binding header.
    #[error("channel binding: {0}")]
    ChannelBinding(&'static str),
    /// The nonce in the client-final-message is not the one the server sent.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The client proof did not match the stored key (wrong password).
    #[error("SCRAM client proof is wrong")]
    BadProof,
    /// A SCRAM step was called in the wrong order, or after the exchange ended.
    #[error("SCRAM message out of order")]
    OutOfOrder,
    /// SCRAM pass-through: the server's verifier is not the one pgsluice holds.
    #[error("SCRAM pass-through: the verifiers differ: {0}")]
    VerifierMismatch(String),
    /// The server's SCRAM signature is wrong (it does not hold our verifier's ServerKey).
    #[error("the server's SCRAM signature is wrong")]
    BadServerSignature,
    /// The server ended the SCRAM exchange with an error (`e=`).
    #[error("the server refused the SCRAM exchange: {0}")]
    ServerRejected(String),
}

/// A user's stored credential from the config file.
#[derive(Clone, Debug)]
pub enum Secret {
    /// A plaintext password.
    Plain(String),
    /// The full `"md5"` + 32 lowercase hex characters form.
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(scram::ScramVerifier),
}

impl Secret {
    /// "md5" followed by 32 hex chars => Md5 (hex lowercased);
    /// "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>" => Scram
    /// (error if malformed); anything else => Plain.
    pub fn parse(s: &str) -> Result<Secret, AuthError> {
        if s.starts_with(scram::VERIFIER_PREFIX) {
            return scram::ScramVerifier::parse(s).map(Secret::Scram);
        }
        if is_md5_hash(s) {
            return Ok(Secret::Md5(s.to_ascii_lowercase()));
        }
        Ok(Secret::Plain(s.to_owned()))
    }

    /// The plaintext password, if known (Plain only).
    pub fn plaintext(&self) -> Option<&str> {
        match self {
            Secret::Plain(p) => Some(p),
            _ => None,
        }
    }

    /// A SCRAM verifier for this secret: Scram as is; Plain => derived with a
    /// random 16-byte salt and 4096 iterations (callers cache the result); Md5 => None.
    pub fn scram_verifier(&self) -> Option<scram::ScramVerifier> {
        match self {
            Secret::Scram(v) => Some(v.clone()),
            Secret::Plain(p) => Some(scram::ScramVerifier::from_password_random_salt(p)),
            Secret::Md5(_) => None,
        }
    }
}

/// True if `s` is "md5" followed by exactly 32 hex digits.
fn is_md5_hash(s: &str) -> bool {
    match s.strip_prefix("md5") {
        Some(hex) => hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// Compares two byte strings without early exit on the first differing byte.
/// The length is not treated as secret.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_md5() {
        let s = Secret::parse("md53175bce1d3201d16594cebf9d7eb3f9d").expect("parse");
        assert!(matches!(s, Secret::Md5(ref h) if h == "md53175bce1d3201d16594cebf9d7eb3f9d"));
        let s = Secret::parse("md53175BCE1D3201D16594CEBF9D7EB3F9D").expect("parse");
        assert!(matches!(s, Secret::Md5(ref h) if h == "md53175bce1d3201d16594cebf9d7eb3f9d"));
        assert!(s.plaintext().is_none());
        assert!(s.scram_verifier().is_none());
    }

    #[test]
    fn parse_plain() {
        for p in [
            "hunter2",
            "md5short",
            "md53175bce1d3201d16594cebf9d7eb3f9dX",
            "",
            "SCRAM-SHA-256",
        ] {
            let s = Secret::parse(p).expect("parse");
            assert_eq!(s.plaintext(), Some(p));
        }
        let v = Secret::Plain("pw".into())
            .scram_verifier()
            .expect("verifier");
        assert_eq!((v.iterations, v.salt.len()), (4096, 16));
    }

    #[test]
    fn parse_scram() {
        let v = scram::ScramVerifier::from_password("pw", b"0123456789abcdef", 4096);
        let s = Secret::parse(&v.to_string()).expect("parse");
        assert!(matches!(s, Secret::Scram(ref p) if p.stored_key == v.stored_key));
        assert!(s.plaintext().is_none());
        assert!(Secret::parse("SCRAM-SHA-256$4096:bad").is_err());
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

/// A user's credentials, prepared once per config load (deriving a SCRAM verifier from a
/// plaintext password costs 4096 hash iterations; we do not pay that per login).
#[derive(Debug)]
pub struct UserAuth {
    pub secret: Option<Secret>,
    pub scram: Option<scram::ScramVerifier>,
    /// The "md5..." hash of a plaintext or md5 secret (hashed once, not per login).
    pub md5: Option<String>,
}

impl UserAuth {
    /// `user`'s credentials from its stored secret.
    pub fn new(user: &str, secret: Option<Secret>) -> UserAuth {
        let scram = secret.as_ref().and_then(Secret::scram_verifier);
        let md5 = match &secret {
            Some(Secret::Plain(password)) => Some(md5::stored_hash(user, password)),
            Some(Secret::Md5(hash)) => Some(hash.clone()),
            Some(Secret::Scram(_)) | None => None,
        };
        UserAuth { secret, scram, md5 }
    }
}

#[cfg(test)]
mod fuzz_tests;
