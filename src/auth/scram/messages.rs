//! Parsing of the client's SCRAM messages (client-first and client-final) into what the
//! server side checks.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Exchange;
use super::verifier::decode_key;
use crate::auth::AuthError;

/// Splits "gs2-cbind-flag,[authzid],bare" and returns the normalised header and the bare part.
pub(super) fn split_gs2_header(msg: &str) -> Result<(String, &str), AuthError> {
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
pub(super) fn parse_client_first_bare(bare: &str) -> Result<&str, AuthError> {
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
pub(super) fn parse_client_final<'a>(
    msg: &'a str,
    ex: &Exchange,
) -> Result<(&'a str, [u8; 32]), AuthError> {
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
