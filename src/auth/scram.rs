//! SCRAM-SHA-256 verifiers and the server side of a SCRAM exchange (RFC 5802 / RFC 7677).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{AuthError, ct_eq};

/// The prefix of a SCRAM-SHA-256 verifier string as PostgreSQL stores it.
pub(crate) const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";
/// The SASL mechanism without channel binding.
const MECHANISM: &str = "SCRAM-SHA-256";
/// The SASL mechanism with channel binding (`tls-server-end-point`), offered over TLS.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// The only channel-binding type PostgreSQL defines.
pub const CBIND_TYPE: &str = "tls-server-end-point";
/// Salt length and iteration count used when deriving a verifier from a plaintext password.
const DEFAULT_SALT_LEN: usize = 16;
const DEFAULT_ITERATIONS: u32 = 4096;
/// Random bytes appended (base64-encoded) to the client nonce, as PostgreSQL does.
const SERVER_NONCE_LEN: usize = 18;

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
fn decode_key(b64: &str) -> Option<[u8; 32]> {
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

/// Splits "gs2-cbind-flag,[authzid],bare" and returns the normalised header and the bare part.
fn split_gs2_header(msg: &str) -> Result<(String, &str), AuthError> {
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("missing GS2 header"));
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {}
        _ => return Err(AuthError::Malformed("invalid GS2 channel-binding flag")),
    }
    if !authzid.is_empty() {
        return Err(AuthError::Malformed(
            "authorization identity is not supported",
        ));
    }
    Ok((format!("{flag},,"), bare))
}

/// Parses "n=user,r=nonce[,ext...]" and returns the client nonce (the username is ignored).
fn parse_client_first_bare(bare: &str) -> Result<&str, AuthError> {
    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(AuthError::Malformed(
            "mandatory SCRAM extension not supported",
        ));
    }
    attribute(Some(first), 'n')?;
    let nonce = attribute(attrs.next(), 'r')?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(AuthError::Malformed("invalid client nonce"));
    }
    Ok(nonce)
}

/// Parses "c=..,r=..[,ext..],p=.." against the exchange state; returns the
/// client-final-message-without-proof and the decoded proof.
fn parse_client_final<'a>(msg: &'a str, ex: &Exchange) -> Result<(&'a str, [u8; 32]), AuthError> {
    let (without_proof, proof_b64) = msg
        .rsplit_once(",p=")
        .ok_or(AuthError::Malformed("missing proof"))?;
    let mut attrs = without_proof.split(',');
    let cbind = attribute(attrs.next(), 'c')?;
    let nonce = attribute(attrs.next(), 'r')?;
    let cbind = STANDARD
        .decode(cbind)
        .map_err(|_| AuthError::Malformed("channel binding is not base64"))?;
    if cbind != ex.cbind_input {
        return Err(AuthError::ChannelBinding(
            "channel-binding data does not match GS2 header",
        ));
    }
    if nonce != ex.nonce {
        return Err(AuthError::NonceMismatch);
    }
    let proof =
        decode_key(proof_b64).ok_or(AuthError::Malformed("proof is not 32 bytes of base64"))?;
    Ok((without_proof, proof))
}

/// Returns the value of a "<name>=<value>" attribute, or an error if it is missing or named otherwise.
fn attribute(part: Option<&str>, name: char) -> Result<&str, AuthError> {
    let part = part.ok_or(AuthError::Malformed("missing attribute"))?;
    let mut chars = part.chars();
    match (chars.next(), chars.next()) {
        (Some(n), Some('=')) if n == name => Ok(chars.as_str()),
        _ => Err(AuthError::Malformed("unexpected attribute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// Produced by PostgreSQL 15 for password 'pw'
    /// (`SET password_encryption='scram-sha-256'; CREATE ROLE x PASSWORD 'pw'`).
    const PG15_VERIFIER: &str = "SCRAM-SHA-256$4096:6UA8M9ModJ3Sbbtj9ZmAuw==$37XHUAVfj4wjBXg8i3+SeJGC/iZ4Sp+u+WSA0bNDnCI=:pUUJThKDB4PnLuyNEzClf2uRQmMGnE89AswkbqQshf0=";

    /// Runs a full exchange with the real client; Ok(()) iff both sides accept.
    fn exchange(verifier: ScramVerifier, password: &str, cb: ChannelBinding) -> Result<(), String> {
        let mut server = ScramServer::new(verifier);
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let first = server
            .client_first("SCRAM-SHA-256", client.message())
            .map_err(|e| e.to_string())?;
        client.update(&first).map_err(|e| e.to_string())?;
        let last = server
            .client_final(client.message())
            .map_err(|e| e.to_string())?;
        client.finish(&last).map_err(|e| e.to_string())
    }

    /// A server that has answered "n,,n=,r=abc".
    fn started_server() -> ScramServer {
        let mut server = ScramServer::new(ScramVerifier::from_password("pw", b"salt", 1));
        server
            .client_first("SCRAM-SHA-256", b"n,,n=,r=abc")
            .expect("first");
        server
    }

    fn exchange_of(server: &ScramServer) -> &Exchange {
        let State::FirstSent(ref ex) = server.state else {
            panic!("not started")
        };
        ex
    }

    #[test]
    fn exchange_with_password_derived_verifier() {
        let v = ScramVerifier::from_password("correct horse", b"0123456789abcdef", 4096);
        exchange(v.clone(), "correct horse", ChannelBinding::unsupported()).expect("n flag");
        exchange(v, "correct horse", ChannelBinding::unrequested()).expect("y flag");
        let v = super::super::Secret::Plain("pw".into())
            .scram_verifier()
            .expect("verifier");
        exchange(v, "pw", ChannelBinding::unsupported()).expect("random salt");
    }

    #[test]
    fn exchange_with_parsed_verifier() {
        let s = ScramVerifier::from_password("s3cret", b"fixed-salt-bytes", 4096).to_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        let v = ScramVerifier::parse(&s).expect("parse");
        assert_eq!(v.to_string(), s);
        exchange(v, "s3cret", ChannelBinding::unsupported()).expect("exchange");
    }

    #[test]
    fn exchange_with_real_client_generated_verifier() {
        let s = postgres_protocol::password::scram_sha_256(b"s3cret");
        let v = ScramVerifier::parse(&s).expect("parse");
        exchange(v.clone(), "s3cret", ChannelBinding::unsupported()).expect("exchange");
        let ours = ScramVerifier::from_password("s3cret", &v.salt, v.iterations);
        assert_eq!(ours.to_string(), s);
    }

    #[test]
    fn exchange_with_postgres15_verifier() {
        let v = ScramVerifier::parse(PG15_VERIFIER).expect("parse");
        assert_eq!(v.to_string(), PG15_VERIFIER);
        exchange(v.clone(), "pw", ChannelBinding::unsupported()).expect("exchange");
        assert!(exchange(v, "pW", ChannelBinding::unsupported()).is_err());
    }

    #[test]
    fn channel_binding_over_tls() {
        let v = ScramVerifier::from_password("pw", b"salt", 4096);
        let hash: std::sync::Arc<[u8]> = std::sync::Arc::from(vec![9u8; 32]);
        let server = || ScramServer::new(v.clone()).with_channel_binding(Some(hash.clone()));
        assert_eq!(
            server().mechanisms(),
            &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
        );
        // PLUS with the right certificate hash, as libpq's channel_binding=require does.
        let mut s = server();
        let mut client =
            ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![9u8; 32]));
        let first = s.client_first(MECHANISM_PLUS, client.message()).unwrap();
        client.update(&first).unwrap();
        let last = s.client_final(client.message()).unwrap();
        client.finish(&last).unwrap();
        assert!(s.client_key().is_some());
        // A client bound to another certificate (a man in the middle) is refused.
        let mut s = server();
        let mut client =
            ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![1u8; 32]));
        let first = s.client_first(MECHANISM_PLUS, client.message()).unwrap();
        client.update(&first).unwrap();
        assert!(matches!(
            s.client_final(client.message()),
            Err(AuthError::ChannelBinding(_))
        ));
        // "y" while we offer binding: a downgrade, refused. "n" is fine.
        let y = ScramSha256::new(b"pw", ChannelBinding::unrequested());
        assert!(server().client_first(MECHANISM, y.message()).is_err());
        let n = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        assert!(server().client_first(MECHANISM, n.message()).is_ok());
        // PLUS without TLS is not offered, and refused.
        let mut plain = ScramServer::new(v.clone());
        assert!(
            plain
                .client_first(MECHANISM_PLUS, b"p=tls-server-end-point,,n=,r=a")
                .is_err()
        );
    }

    #[test]
    fn wrong_password_rejected() {
        let v = ScramVerifier::from_password("right", b"salt", 4096);
        let mut server = ScramServer::new(v);
        let mut client = ScramSha256::new(b"wrong", ChannelBinding::unsupported());
        let first = server
            .client_first("SCRAM-SHA-256", client.message())
            .expect("first");
        client.update(&first).expect("update");
        assert!(matches!(
            server.client_final(client.message()),
            Err(AuthError::BadProof)
        ));
        assert!(matches!(
            server.client_final(client.message()),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn server_first_shape() {
        let server = started_server();
        let ex = exchange_of(&server);
        assert!(ex.nonce.starts_with("abc"));
        assert_eq!(ex.nonce.len(), 3 + 24);
        assert_eq!(ex.server_first, format!("r={},s=c2FsdA==,i=1", ex.nonce));
        assert_eq!(ex.client_first_bare, "n=,r=abc");
        assert_eq!(ScramServer::MECHANISMS, &["SCRAM-SHA-256"]);
    }

    #[test]
    fn client_first_rejects_bad_input() {
        let bad: &[(&str, &[u8])] = &[
            ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc"),
            ("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),
            ("SCRAM-SHA-256", b"x,,n=,r=abc"),
            ("SCRAM-SHA-256", b"n,a=bob,n=,r=abc"),
            ("SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"),
            ("SCRAM-SHA-256", b"n,,n=,r="),
            ("SCRAM-SHA-256", b"n,,n=,r=a b"),
            ("SCRAM-SHA-256", b"n,,n="),
            ("SCRAM-SHA-256", b"n,,r=abc"),
            ("SCRAM-SHA-256", b"n,,"),
            ("SCRAM-SHA-256", b"n,"),
            ("SCRAM-SHA-256", b""),
            ("SCRAM-SHA-256", b"\xff\xfe,,n=,r=abc"),
            ("SCRAM-SHA-256", b"\0\0\0\0garbage"),
            ("SCRAM-SHA-256", "n,,n=,r=\u{00e9}".as_bytes()),
        ];
        for (mech, data) in bad {
            let mut s = ScramServer::new(ScramVerifier::from_password("pw", b"salt", 1));
            assert!(s.client_first(mech, data).is_err(), "{mech} {data:?}");
            assert!(matches!(
                s.client_first(mech, b"n,,n=,r=abc"),
                Err(AuthError::OutOfOrder)
            ));
        }
    }

    #[test]
    fn client_final_rejects_bad_input() {
        let proof = STANDARD.encode([0u8; 32]);
        let cases: [&dyn Fn(&str) -> String; 11] = [
            &|n| format!("c=biws,r={n}x,p={proof}"),
            &|n| format!("c=eSws,r={n},p={proof}"),
            &|n| format!("c=!!,r={n},p={proof}"),
            &|n| format!("c=biws,r={n},p=AAAA"),
            &|n| format!("c=biws,r={n},p="),
            &|n| format!("c=biws,r={n}"),
            &|n| format!("r={n},p={proof}"),
            &|_| format!("c=biws,p={proof}"),
            &|n| format!("c=biws,r={n},p={proof}"), // all-zero proof is wrong
            &|_| "garbage".to_string(),
            &|_| String::new(),
        ];
        for case in cases {
            let mut server = started_server();
            let msg = case(&exchange_of(&server).nonce);
            assert!(server.client_final(msg.as_bytes()).is_err(), "{msg}");
        }
        assert!(started_server().client_final(b"c=biws,r=\xff,p=x").is_err());
        let mut fresh = ScramServer::new(ScramVerifier::from_password("pw", b"s", 1));
        assert!(matches!(
            fresh.client_final(b"x"),
            Err(AuthError::OutOfOrder)
        ));
    }

    #[test]
    fn parse_rejects_malformed_verifiers() {
        let good = ScramVerifier::from_password("pw", b"salt", 4096).to_string();
        let (head, keys) = good.split_at(good.rfind('$').unwrap_or(0));
        let bad = [
            "".to_string(),
            "SCRAM-SHA-256$".to_string(),
            "SCRAM-SHA-256$4096:c2FsdA==".to_string(),
            good.replace("$4096:", "$0:"),
            good.replace("$4096:", "$-1:"),
            good.replace("$4096:", "$x:"),
            good.replace("$4096:", "$99999999999:"),
            good.replace("c2FsdA==", "c2FsdA"),
            good.replace("c2FsdA==", ""),
            good.replace("c2FsdA==", "!!"),
            format!("{head}$AAAA:AAAA"),
            format!("{head}{}", keys.replace(':', "")),
            format!("{}\u{00e9}", good),
            good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
        ];
        for s in bad {
            assert!(ScramVerifier::parse(&s).is_err(), "{s}");
        }
    }

    #[test]
    fn hi_matches_rfc7677_vector() {
        // RFC 7677 section 3: user, pencil, salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let v = ScramVerifier::from_password("pencil", &salt, 4096);
        let mut server = ScramServer::new(v);
        server
            .client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .expect("first");
        let State::FirstSent(ref mut ex) = server.state else {
            panic!("state")
        };
        // Force the RFC's server nonce so the RFC's proof applies.
        ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        ex.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ex.nonce);
        let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let reply = server.client_final(final_msg.as_bytes()).expect("final");
        assert_eq!(reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn random_input_never_panics() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let alphabet = b"nyp=,rcam\xff\x00abcAB+/=$:SCRAM-SHA-256";
        for _ in 0..2000 {
            let len = rng.gen_range(0..40);
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = ScramVerifier::parse(&String::from_utf8_lossy(&data));
            let _ = ScramServer::new(ScramVerifier::from_password("pw", b"s", 1))
                .client_first("SCRAM-SHA-256", &data);
            let mut server = started_server();
            let mut msg = format!("c=biws,r={},", exchange_of(&server).nonce).into_bytes();
            msg.extend_from_slice(&data);
            let _ = server.client_final(&msg);
            let _ = started_server().client_final(&data);
        }
    }
}
