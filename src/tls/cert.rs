//! What pgsluice reads from a certificate: the `tls-server-end-point` channel-binding hash
//! (RFC 5929) and the subject's common name (for certificate login).

use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Signature algorithm OIDs whose hash is SHA-384 or SHA-512 (RSA and ECDSA). Every
/// other RSA/ECDSA signature (SHA-256, and SHA-1 or MD5, which RFC 5929 maps to SHA-256)
/// binds with SHA-256.
const SHA384: &[&str] = &["1.2.840.113549.1.1.12", "1.2.840.10045.4.3.3"];
const SHA512: &[&str] = &["1.2.840.113549.1.1.13", "1.2.840.10045.4.3.4"];
/// Algorithms with no single hash (Ed25519, Ed448): no channel binding, as in PostgreSQL.
const NO_HASH: &[&str] = &["1.3.101.112", "1.3.101.113"];

/// The `tls-server-end-point` data for a DER certificate: its hash under the hash of its
/// signature algorithm. `None` when the certificate does not parse or the algorithm has
/// no single hash.
pub fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    if NO_HASH.contains(&oid.as_str()) {
        return None;
    }
    Some(if SHA384.contains(&oid.as_str()) {
        Sha384::digest(der).to_vec()
    } else if SHA512.contains(&oid.as_str()) {
        Sha512::digest(der).to_vec()
    } else {
        Sha256::digest(der).to_vec()
    })
}

/// The first common name (CN) of the certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_none() {
        assert_eq!(end_point_hash(b"not a certificate"), None);
        assert_eq!(common_name(&[0x30, 0x03, 0x02, 0x01]), None);
        assert_eq!(common_name(&[]), None);
    }

    #[test]
    fn hash_and_cn_of_real_certificates() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "alice");
            let cert = params.self_signed(&key).unwrap();
            let der = cert.der().as_ref();
            let want = if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
                Sha384::digest(der).to_vec()
            } else {
                Sha256::digest(der).to_vec()
            };
            assert_eq!(end_point_hash(der), Some(want));
            assert_eq!(common_name(der).as_deref(), Some("alice"));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(end_point_hash(cert.der().as_ref()), None);
    }

    #[test]
    fn random_input_never_panics() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        for _ in 0..2000 {
            let len = rng.gen_range(0..200);
            let mut data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            if let Some(b) = data.first_mut() {
                *b = 0x30;
            }
            let _ = end_point_hash(&data);
            let _ = common_name(&data);
        }
    }
}
