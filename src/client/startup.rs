//! Client authentication against the configured (or looked-up) users: md5, SCRAM-SHA-256
//! and, over TLS, SCRAM-SHA-256-PLUS; and certificate login. (The first packets and TLS
//! are in `negotiate.rs`.)
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientError;
use crate::auth::{Secret, md5, scram::ScramServer};
use crate::config::{AuthType, Tls};
use crate::net::ClientStream;
use crate::protocol::{self, build, fe};
use crate::shared::UserAuth;

/// Largest message accepted during authentication.
const MAX_AUTH_MESSAGE: usize = 10_000;

/// Room a read during authentication asks for when the next message's length is not
/// known yet: an md5 password message is 41 bytes, SCRAM's about 100 and 110 (longer
/// messages are read on in the loop).
const AUTH_READ: usize = 256;

/// Reads one whole tagged message during authentication.
async fn read_message(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, ClientError> {
    loop {
        let want = match protocol::header(buf, MAX_AUTH_MESSAGE)
            .map_err(|e| ClientError::protocol(e.to_string()))?
        {
            Some(h) if buf.len() >= h.frame_len => return Ok(buf.split_to(h.frame_len)),
            Some(h) => h.frame_len - buf.len(),
            None => AUTH_READ,
        };
        buf.reserve(want);
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Eof);
        }
    }
}

async fn send(stream: &mut ClientStream, buf: &mut BytesMut) -> Result<(), ClientError> {
    stream.write_all(buf).await?;
    // Through the TLS layer too: rustls may hold what the socket did not take yet.
    stream.flush().await?;
    buf.clear();
    Ok(())
}

fn auth_failed(user: &str) -> ClientError {
    ClientError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs the authentication exchange of `method`; `Ok` means the client may proceed, with
/// the ClientKey its SCRAM proof revealed (for SCRAM pass-through), if any. `inbuf` holds
/// what the client sent after its startup packet; what it sent after its last
/// authentication message stays there, for the session.
pub async fn authenticate(
    stream: &mut ClientStream,
    method: AuthType,
    user: &str,
    auth: Option<&UserAuth>,
    inbuf: &mut BytesMut,
) -> Result<Option<[u8; 32]>, ClientError> {
    let mut out = BytesMut::new();
    let secret = auth.and_then(|a| a.secret.as_ref());
    match method {
        AuthType::Trust => return Ok(None),
        // Like PostgreSQL: an md5 method with a SCRAM-only secret uses SCRAM.
        AuthType::Md5 if !matches!(secret, Some(Secret::Scram(_)) | None) => {
            let salt: [u8; 4] = rand::random();
            build::auth_md5(&mut out, salt);
            send(stream, &mut out).await?;
            let msg = read_message(stream, inbuf).await?;
            let response = password_text(&msg)?;
            let hash = auth.and_then(|a| a.md5.as_deref());
            let hash = hash.ok_or_else(|| auth_failed(user))?;
            if !md5::verify_hash(hash, salt, response) {
                return Err(auth_failed(user));
            }
        }
        _ => {
            let verifier = auth.and_then(|a| a.scram.clone());
            return scram_exchange(stream, &mut out, inbuf, user, verifier).await;
        }
    }
    Ok(None)
}

async fn scram_exchange(
    stream: &mut ClientStream,
    out: &mut BytesMut,
    inbuf: &mut BytesMut,
    user: &str,
    verifier: Option<crate::auth::scram::ScramVerifier>,
) -> Result<Option<[u8; 32]>, ClientError> {
    // An unknown user still goes through the exchange, so a client cannot tell users apart.
    let verifier = verifier.unwrap_or_else(|| {
        crate::auth::scram::ScramVerifier::from_password(
            &rand::random::<u64>().to_string(),
            b"pgsluice-unknown",
            4096,
        )
    });
    let mut server = ScramServer::new(verifier).with_channel_binding(stream.cert_hash());
    build::auth_sasl(out, server.mechanisms());
    send(stream, out).await?;
    let msg = read_message(stream, inbuf).await?;
    let (mechanism, data) = sasl_initial(&msg)?;
    let first = server
        .client_first(mechanism, data)
        .map_err(|e| ClientError::protocol(format!("SCRAM: {e}")))?;
    build::auth_sasl_continue(out, &first);
    send(stream, out).await?;
    let msg = read_message(stream, inbuf).await?;
    expect_password_tag(&msg)?;
    let final_msg = server
        .client_final(protocol::body(&msg))
        .map_err(|_| auth_failed(user))?;
    build::auth_sasl_final(out, &final_msg);
    send(stream, out).await?;
    Ok(server.client_key())
}

/// Certificate login: the client's verified certificate must name `user` in its CN, or
/// `tls.cert_map` must map its CN to `user`.
pub fn check_certificate(stream: &ClientStream, tls: &Tls, user: &str) -> Result<(), ClientError> {
    let refuse = |why: String| {
        ClientError::fatal(
            "28000",
            format!("certificate authentication failed for user \"{user}\": {why}"),
        )
    };
    let der = stream
        .peer_certificate()
        .ok_or_else(|| refuse("the client presented no certificate".into()))?;
    let cn = crate::tls::cert::common_name(der)
        .ok_or_else(|| refuse("the certificate has no common name (CN)".into()))?;
    if cn == user || tls.cert_map.get(&cn).is_some_and(|u| u == user) {
        Ok(())
    } else {
        Err(refuse(format!(
            "its CN is \"{cn}\", and tls.cert_map does not map it to this user"
        )))
    }
}

fn expect_password_tag(msg: &[u8]) -> Result<(), ClientError> {
    match msg.first() {
        Some(&fe::PASSWORD) => Ok(()),
        tag => Err(ClientError::protocol(format!(
            "expected a password message, got message type {:?}",
            tag.map_or('?', |&t| t as char)
        ))),
    }
}

fn password_text(msg: &[u8]) -> Result<&str, ClientError> {
    expect_password_tag(msg)?;
    protocol::cstr(protocol::body(msg))
        .map(|(s, _)| s)
        .ok_or_else(|| ClientError::protocol("malformed password message"))
}

fn sasl_initial(msg: &[u8]) -> Result<(&str, &[u8]), ClientError> {
    expect_password_tag(msg)?;
    let (mechanism, rest) = protocol::cstr(protocol::body(msg))
        .ok_or_else(|| ClientError::protocol("malformed SASLInitialResponse"))?;
    let (Some(len), Some(data)) = (protocol::be_u32(rest, 0), rest.get(4..)) else {
        return Err(ClientError::protocol("malformed SASLInitialResponse"));
    };
    // -1 (no data) is never what a SCRAM client sends.
    if usize::try_from(len).ok() != Some(data.len()) {
        return Err(ClientError::protocol(
            "malformed SASLInitialResponse length",
        ));
    }
    Ok((mechanism, data))
}
