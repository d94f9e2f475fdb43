//! The start of a client connection: the first packet (answering SSL and GSS encryption
//! requests with `N`), and authentication against the configured users.

use std::collections::BTreeMap;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientError;
use crate::auth::{Secret, md5, scram::ScramServer};
use crate::config::AuthType;
use crate::protocol::startup::{self, StartupPacket};
use crate::protocol::{self, build, fe};
use crate::shared::UserAuth;

/// Largest message accepted during authentication.
const MAX_AUTH_MESSAGE: usize = 10_000;

/// What the first packet asked for.
pub enum First {
    Startup(BTreeMap<String, String>),
    Cancel { pid: u32, secret: u32 },
}

/// Reads first packets until a StartupMessage or CancelRequest; refuses encryption.
pub async fn read_first(stream: &mut TcpStream) -> Result<First, ClientError> {
    loop {
        let mut head = [0u8; 4];
        stream.read_exact(&mut head).await?;
        let len = startup::packet_len(head).map_err(|e| ClientError::protocol(e.to_string()))?;
        let mut packet = vec![0u8; len];
        packet[..4].copy_from_slice(&head);
        stream.read_exact(&mut packet[4..]).await?;
        match startup::parse(&packet) {
            Ok(StartupPacket::SslRequest) | Ok(StartupPacket::GssEncRequest) => {
                stream.write_all(b"N").await?;
            }
            Ok(StartupPacket::Startup(params)) => return Ok(First::Startup(params)),
            Ok(StartupPacket::Cancel { pid, secret }) => return Ok(First::Cancel { pid, secret }),
            Err(e @ startup::StartupError::Unsupported(..)) => {
                return Err(ClientError::fatal("0A000", e.to_string()));
            }
            Err(e) => return Err(ClientError::protocol(e.to_string())),
        }
    }
}

/// Reads one whole tagged message during authentication.
async fn read_message(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<BytesMut, ClientError> {
    loop {
        if let Some(h) = protocol::header(buf, MAX_AUTH_MESSAGE)
            .map_err(|e| ClientError::protocol(e.to_string()))?
            && buf.len() >= h.frame_len
        {
            return Ok(buf.split_to(h.frame_len));
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(ClientError::Eof);
        }
    }
}

async fn send(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ClientError> {
    stream.write_all(buf).await?;
    buf.clear();
    Ok(())
}

fn auth_failed(user: &str) -> ClientError {
    ClientError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Runs the configured authentication exchange; `Ok` means the client may proceed.
pub async fn authenticate(
    stream: &mut TcpStream,
    method: AuthType,
    user: &str,
    auth: Option<&UserAuth>,
) -> Result<(), ClientError> {
    let mut out = BytesMut::new();
    let mut inbuf = BytesMut::new();
    let secret = auth.and_then(|a| a.secret.as_ref());
    match method {
        AuthType::Trust => return Ok(()),
        // Like PostgreSQL: an md5 method with a SCRAM-only secret uses SCRAM.
        AuthType::Md5 if !matches!(secret, Some(Secret::Scram(_)) | None) => {
            let salt: [u8; 4] = rand::random();
            build::auth_md5(&mut out, salt);
            send(stream, &mut out).await?;
            let msg = read_message(stream, &mut inbuf).await?;
            let response = password_text(&msg)?;
            let secret = secret.ok_or_else(|| auth_failed(user))?;
            if !md5::verify(secret, user, salt, response) {
                return Err(auth_failed(user));
            }
        }
        _ => {
            let verifier = auth.and_then(|a| a.scram.clone());
            scram_exchange(stream, &mut out, &mut inbuf, user, verifier).await?;
        }
    }
    Ok(())
}

async fn scram_exchange(
    stream: &mut TcpStream,
    out: &mut BytesMut,
    inbuf: &mut BytesMut,
    user: &str,
    verifier: Option<crate::auth::scram::ScramVerifier>,
) -> Result<(), ClientError> {
    build::auth_sasl(out, ScramServer::MECHANISMS);
    send(stream, out).await?;
    // An unknown user still goes through the exchange, so a client cannot tell users apart.
    let verifier = verifier.unwrap_or_else(|| {
        crate::auth::scram::ScramVerifier::from_password(
            &rand::random::<u64>().to_string(),
            b"pgsluice-unknown",
            4096,
        )
    });
    let mut server = ScramServer::new(verifier);
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
    send(stream, out).await
}

fn expect_password_tag(msg: &[u8]) -> Result<(), ClientError> {
    if msg[0] != fe::PASSWORD {
        return Err(ClientError::protocol(format!(
            "expected a password message, got message type {:?}",
            msg[0] as char
        )));
    }
    Ok(())
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
    if rest.len() < 4 {
        return Err(ClientError::protocol("malformed SASLInitialResponse"));
    }
    let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let data = &rest[4..];
    if len < 0 || len as usize != data.len() {
        return Err(ClientError::protocol(
            "malformed SASLInitialResponse length",
        ));
    }
    Ok((mechanism, data))
}
