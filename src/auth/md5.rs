//! PostgreSQL MD5 password hashing and checking of AuthenticationMD5Password responses.

use md5::{Digest, Md5};

use super::{Secret, ct_eq};

/// "md5" + hex(md5(password + user)), as PostgreSQL stores it.
pub fn stored_hash(user: &str, password: &str) -> String {
    md5_hex(&[password.as_bytes(), user.as_bytes()])
}

/// What a client sends in PasswordMessage for AuthenticationMD5Password:
/// "md5" + hex(md5(hex_part_of_stored + salt)).
///
/// `stored_hash` should be the full "md5..." form; without the prefix it is used as is.
pub fn client_response(stored_hash: &str, salt: [u8; 4]) -> String {
    let hex_part = stored_hash.strip_prefix("md5").unwrap_or(stored_hash);
    md5_hex(&[hex_part.as_bytes(), &salt])
}

/// Check a client's PasswordMessage string against a Plain or Md5 secret
/// (Scram secret => false); constant-time compare.
pub fn verify(secret: &Secret, user: &str, salt: [u8; 4], response: &str) -> bool {
    match secret {
        Secret::Plain(password) => verify_hash(&stored_hash(user, password), salt, response),
        Secret::Md5(hash) => verify_hash(hash, salt, response),
        Secret::Scram(_) => false,
    }
}

/// [`verify`] against the stored "md5..." hash itself (see `UserAuth::md5`).
pub fn verify_hash(stored_hash: &str, salt: [u8; 4], response: &str) -> bool {
    ct_eq(
        client_response(stored_hash, salt).as_bytes(),
        response.as_bytes(),
    )
}

/// "md5" + lowercase hex of the MD5 digest of the concatenated parts.
fn md5_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let hex = |nibble: u8| b"0123456789abcdef".get(usize::from(nibble)).copied();
    let mut out = Vec::with_capacity(35);
    out.extend_from_slice(b"md5");
    for byte in hasher.finalize() {
        out.extend(hex(byte >> 4));
        out.extend(hex(byte & 0x0f));
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hash_matches_postgres() {
        assert_eq!(
            stored_hash("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
        // From PostgreSQL 15: password_encryption='md5', CREATE ROLE postgres2 PASSWORD 'postgres'.
        assert_eq!(
            stored_hash("postgres2", "postgres"),
            "md5f2f8915a1d20bb8dcb940115f5bf3c05"
        );
        assert_eq!(
            stored_hash("postgres", "postgres"),
            postgres_protocol::password::md5(b"postgres", "postgres")
        );
    }

    #[test]
    fn client_response_matches_real_client() {
        let salt = [0x01, 0x02, 0xfe, 0xff];
        let real = postgres_protocol::authentication::md5_hash(b"alice", b"s3cret", salt);
        assert_eq!(client_response(&stored_hash("alice", "s3cret"), salt), real);
    }

    #[test]
    fn verify_plain_and_md5() {
        let salt = [9, 8, 7, 6];
        let resp = postgres_protocol::authentication::md5_hash(b"alice", b"s3cret", salt);
        assert!(verify(
            &Secret::Plain("s3cret".into()),
            "alice",
            salt,
            &resp
        ));
        let md5 = Secret::Md5(stored_hash("alice", "s3cret"));
        assert!(verify(&md5, "alice", salt, &resp));
        // An Md5 secret already has the user baked in; a Plain one uses `user`.
        assert!(!verify(&Secret::Plain("s3cret".into()), "bob", salt, &resp));
        assert!(!verify(&md5, "alice", [0; 4], &resp));
        assert!(!verify(
            &Secret::Plain("wrong".into()),
            "alice",
            salt,
            &resp
        ));
        assert!(!verify(&md5, "alice", salt, ""));
        assert!(!verify(&md5, "alice", salt, "md5\u{00e9}garbage\0"));
    }

    #[test]
    fn verify_scram_secret_is_false() {
        let v = super::super::scram::ScramVerifier::from_password("s3cret", b"salt", 1);
        let resp = postgres_protocol::authentication::md5_hash(b"alice", b"s3cret", [0; 4]);
        assert!(!verify(&Secret::Scram(v), "alice", [0; 4], &resp));
    }
}
