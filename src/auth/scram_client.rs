//! The client side of SCRAM-SHA-256 towards a server, from a ClientKey instead of a
//! password: SCRAM pass-through.
//!
//! A client that logged in to pgsluice with SCRAM revealed its ClientKey to us (its proof
//! XOR the ClientSignature; see `ScramServer::client_key`). With the verifier's StoredKey
//! and ServerKey that is all a SCRAM client needs: ClientProof = ClientKey XOR
//! HMAC(StoredKey, AuthMessage), and the server's signature is HMAC(ServerKey,
//! AuthMessage). It works only when the server holds the same verifier (same salt,
//! iteration count and keys); a different salt or count is detected in the
//! server-first-message, different keys make the server refuse the proof.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

use super::AuthError;
use super::scram::{CBIND_TYPE, MECHANISM_PLUS, ScramVerifier, hmac};

/// One client-side exchange.
pub struct ScramKeyClient {
    client_key: [u8; 32],
    verifier: ScramVerifier,
    /// The server certificate's `tls-server-end-point` hash, when binding to it.
    cert_hash: Option<Vec<u8>>,
    gs2_header: String,
    client_first_bare: String,
    /// AuthMessage, once the client-final-message is built.
    auth_message: Option<String>,
}

impl ScramKeyClient {
    /// Starts an exchange with a random nonce. With `cert_hash`, the exchange binds to
    /// the TLS channel (mechanism SCRAM-SHA-256-PLUS); without, the client says it does
    /// not support binding ("n"), which a server accepts over TLS too.
    pub fn new(client_key: [u8; 32], verifier: ScramVerifier, cert_hash: Option<Vec<u8>>) -> Self {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::with_nonce(client_key, verifier, cert_hash, "", &STANDARD.encode(raw))
    }

    fn with_nonce(
        client_key: [u8; 32],
        verifier: ScramVerifier,
        cert_hash: Option<Vec<u8>>,
        user: &str,
        nonce: &str,
    ) -> Self {
        let gs2_header = match cert_hash {
            Some(_) => format!("p={CBIND_TYPE},,"),
            None => "n,,".to_string(),
        };
        ScramKeyClient {
            client_key,
            verifier,
            cert_hash,
            gs2_header,
            client_first_bare: format!("n={user},r={nonce}"),
            auth_message: None,
        }
    }

    /// The SASL mechanism to name in SASLInitialResponse.
    pub fn mechanism(&self) -> &'static str {
        if self.cert_hash.is_some() {
            MECHANISM_PLUS
        } else {
            "SCRAM-SHA-256"
        }
    }

    /// The client-first-message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// Takes the server-first-message and returns the client-final-message.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let msg = std::str::from_utf8(data).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        let mut attrs = msg.split(',');
        let nonce = value(attrs.next(), "r=")?;
        let salt = value(attrs.next(), "s=")?;
        let iterations = value(attrs.next(), "i=")?;
        let client_nonce = self
            .client_first_bare
            .split("r=")
            .nth(1)
            .unwrap_or_default();
        if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
            return Err(AuthError::NonceMismatch);
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| AuthError::Malformed("salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| AuthError::Malformed("iteration count is not a number"))?;
        if salt != self.verifier.salt || iterations != self.verifier.iterations {
            return Err(AuthError::VerifierMismatch(format!(
                "the server's SCRAM verifier has salt {} and {iterations} iterations, \
                 pgsluice's has salt {} and {} iterations",
                STANDARD.encode(&salt),
                STANDARD.encode(&self.verifier.salt),
                self.verifier.iterations
            )));
        }
        let mut cbind = self.gs2_header.clone().into_bytes();
        cbind.extend_from_slice(self.cert_hash.as_deref().unwrap_or_default());
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(cbind));
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut proof = self.client_key;
        proof.iter_mut().zip(signature).for_each(|(p, s)| *p ^= s);
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (the server's signature, or its error).
    pub fn server_final(&self, data: &[u8]) -> Result<(), AuthError> {
        let auth_message = self.auth_message.as_ref().ok_or(AuthError::OutOfOrder)?;
        let msg = std::str::from_utf8(data).map_err(|_| AuthError::Malformed("not UTF-8"))?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(AuthError::ServerRejected(e.to_string()));
        }
        let sig = value(msg.split(',').next(), "v=")?;
        let sig = STANDARD
            .decode(sig)
            .map_err(|_| AuthError::Malformed("server signature is not base64"))?;
        let expected = hmac(&self.verifier.server_key, auth_message.as_bytes());
        if super::ct_eq(&sig, &expected) {
            Ok(())
        } else {
            Err(AuthError::BadServerSignature)
        }
    }
}

fn value<'a>(part: Option<&'a str>, prefix: &str) -> Result<&'a str, AuthError> {
    part.and_then(|p| p.strip_prefix(prefix))
        .ok_or(AuthError::Malformed(
            "unexpected attribute in server message",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::ScramServer;
    use sha2::{Digest, Sha256};

    /// RFC 7677 section 3's example, from the ClientKey alone.
    #[test]
    fn rfc7677_vector() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = ScramVerifier::from_password("pencil", &salt, 4096);
        let salted = super::super::scram::hi(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(client_key)),
            verifier.stored_key
        );
        let mut c =
            ScramKeyClient::with_nonce(client_key, verifier, None, "user", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let last = c.server_first(server_first).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(matches!(
            c.server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(AuthError::BadServerSignature)
        ));
        assert!(matches!(
            c.server_final(b"e=invalid-proof"),
            Err(AuthError::ServerRejected(_))
        ));
    }

    /// The ClientKey a server recovers from a password client drives our client against a
    /// second server with the same verifier, with and without channel binding.
    #[test]
    fn pass_through_round_trip() {
        use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
        let verifier = ScramVerifier::from_password("s3cret", b"some-salt", 4096);
        let mut front = ScramServer::new(verifier.clone());
        let mut app = ScramSha256::new(b"s3cret", ChannelBinding::unsupported());
        let first = front.client_first("SCRAM-SHA-256", app.message()).unwrap();
        app.update(&first).unwrap();
        let fin = front.client_final(app.message()).unwrap();
        app.finish(&fin).unwrap();
        let key = front.client_key().unwrap();
        for hash in [None, Some(vec![7u8; 32])] {
            let arc = hash.clone().map(std::sync::Arc::<[u8]>::from);
            let mut back = ScramServer::new(verifier.clone()).with_channel_binding(arc);
            let mut ours = ScramKeyClient::new(key, verifier.clone(), hash);
            let sf = back
                .client_first(ours.mechanism(), &ours.client_first())
                .unwrap();
            let cf = ours.server_first(&sf).unwrap();
            let v = back.client_final(&cf).unwrap();
            ours.server_final(&v).unwrap();
        }
    }

    #[test]
    fn different_verifier_is_named() {
        let ours = ScramVerifier::from_password("pw", b"salt-one", 4096);
        let mut c = ScramKeyClient::new([1; 32], ours, None);
        let nonce = String::from_utf8(c.client_first()).unwrap();
        let nonce = nonce.split("r=").nth(1).unwrap().to_string();
        let sf = format!("r={nonce}xyz,s={},i=4096", STANDARD.encode(b"salt-two"));
        let err = c.server_first(sf.as_bytes()).unwrap_err();
        assert!(matches!(err, AuthError::VerifierMismatch(_)), "{err}");
        let sf = format!("r=other,s={},i=4096", STANDARD.encode(b"salt-one"));
        assert!(matches!(
            c.server_first(sf.as_bytes()),
            Err(AuthError::NonceMismatch)
        ));
        for bad in [&b""[..], b"garbage", b"r=", b"\xff", b"s=x,r=y,i=1"] {
            assert!(c.server_first(bad).is_err());
        }
    }

    #[test]
    fn random_server_messages_never_panic() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let verifier = ScramVerifier::from_password("pw", b"salt", 1);
        let alphabet = b"rsiev=,+/=AZaz09\xff\x00";
        for _ in 0..2000 {
            let len = rng.gen_range(0..60);
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let mut c = ScramKeyClient::new([0; 32], verifier.clone(), None);
            let _ = c.server_final(&data);
            let _ = c.server_first(&data);
            let _ = c.server_final(&data);
        }
    }
}
