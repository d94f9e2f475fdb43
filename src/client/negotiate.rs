//! The first packets of a client connection, and TLS: SSLRequest is answered `S` (then the
//! TLS handshake) when client TLS is on, `N` otherwise; a connection whose first byte is a
//! TLS handshake record is direct TLS (libpq 17's `sslnegotiation=direct`), which must
//! negotiate ALPN `postgresql`; GSSENCRequest is answered `N`.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::BTreeMap;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientError;
use crate::net::ClientStream;
use crate::protocol::startup::{self, StartupPacket};
use crate::tls::Acceptor;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The first read's room: a whole startup packet as drivers send it (libpq's is about
/// 100 bytes, pgjdbc's about 250) in one `recv`.
const FIRST_READ: usize = 512;

/// What the first packet asked for.
pub enum First {
    /// A StartupMessage's parameters, and what the client sent after it (read with it,
    /// kept for authentication and then the session).
    Startup(BTreeMap<String, String>, BytesMut),
    Cancel {
        pid: u32,
        secret: u32,
    },
}

/// A connection refused before login; `stream` is where to send the error, when a
/// message can still reach the client.
pub struct Refused {
    pub stream: Option<ClientStream>,
    pub error: ClientError,
}

fn refuse(stream: ClientStream, error: ClientError) -> Refused {
    Refused {
        stream: Some(stream),
        error,
    }
}

fn lost(e: std::io::Error) -> Refused {
    Refused {
        stream: None,
        error: ClientError::Io(e),
    }
}

/// Reads first packets (and does TLS) until a StartupMessage or CancelRequest.
pub async fn negotiate(
    mut stream: ClientStream,
    acceptor: Option<&Acceptor>,
) -> Result<(ClientStream, First), Refused> {
    // No TLS over a Unix socket, as in PostgreSQL: SSLRequest is answered `N`.
    let acceptor = acceptor.filter(|_| !stream.is_unix());
    let mut ssl_asked = false;
    let mut pending = BytesMut::new();
    if let Some(acceptor) = acceptor
        && next_byte(&stream).await.map_err(lost)? == Some(TLS_HANDSHAKE)
    {
        stream = handshake(stream, acceptor).await?;
        if !crate::tls::accept::negotiated_postgresql(&stream) {
            let msg = "direct TLS connection without ALPN \"postgresql\" (use sslnegotiation=direct \
                       with libpq 17 or later, or sslmode without direct negotiation)";
            return Err(refuse(stream, ClientError::protocol(msg)));
        }
        ssl_asked = true;
    }
    loop {
        let packet = match read_packet(&mut stream, &mut pending).await {
            Ok(p) => p,
            Err(e) => return Err(refuse(stream, e)),
        };
        let parsed = startup::parse(&packet);
        if matches!(
            parsed,
            Ok(StartupPacket::SslRequest | StartupPacket::GssEncRequest)
        ) && !pending.is_empty()
        {
            // As PostgreSQL: what came before the answer was not encrypted, and may have
            // been put there by someone in the middle.
            let msg = "received unencrypted data after SSL request";
            return Err(refuse(stream, ClientError::protocol(msg)));
        }
        match parsed {
            Ok(StartupPacket::SslRequest) if ssl_asked || stream.is_tls() => {
                let msg = "SSLRequest received twice (or over TLS)";
                return Err(refuse(stream, ClientError::protocol(msg)));
            }
            Ok(StartupPacket::SslRequest) => {
                ssl_asked = true;
                let Some(acceptor) = acceptor else {
                    stream.write_all(b"N").await.map_err(lost)?;
                    continue;
                };
                stream.write_all(b"S").await.map_err(lost)?;
                match next_byte(&stream).await.map_err(lost)? {
                    Some(TLS_HANDSHAKE) => stream = handshake(stream, acceptor).await?,
                    None => return Err(lost(std::io::ErrorKind::UnexpectedEof.into())),
                    Some(_) => {
                        let msg = "expected a TLS handshake after SSLRequest was answered 'S'";
                        return Err(refuse(stream, ClientError::protocol(msg)));
                    }
                }
            }
            Ok(StartupPacket::GssEncRequest) if stream.is_tls() => {
                let msg = "GSSENCRequest received over TLS";
                return Err(refuse(stream, ClientError::protocol(msg)));
            }
            Ok(StartupPacket::GssEncRequest) => stream.write_all(b"N").await.map_err(lost)?,
            Ok(StartupPacket::Startup(params)) => {
                return Ok((stream, First::Startup(params, pending)));
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                return Ok((stream, First::Cancel { pid, secret }));
            }
            Err(e @ startup::StartupError::Unsupported(..)) => {
                return Err(refuse(stream, ClientError::fatal("0A000", e.to_string())));
            }
            Err(e) => return Err(refuse(stream, ClientError::protocol(e.to_string()))),
        }
    }
}

/// The next byte the plain client will send, without consuming it; `None` at EOF.
async fn next_byte(stream: &ClientStream) -> std::io::Result<Option<u8>> {
    let ClientStream::Plain(tcp) = stream else {
        return Ok(None);
    };
    let mut b = [0u8; 1];
    let n = tcp.peek(&mut b).await?;
    Ok((n == 1).then_some(b[0]))
}

/// Runs the TLS handshake on a plain stream. A failed handshake leaves nothing to send an
/// error on (rustls has sent the client a TLS alert).
async fn handshake(stream: ClientStream, acceptor: &Acceptor) -> Result<ClientStream, Refused> {
    let ClientStream::Plain(tcp) = stream else {
        return Ok(stream);
    };
    acceptor.accept(tcp).await.map_err(|e| Refused {
        stream: None,
        error: ClientError::Tls(e.to_string()),
    })
}

/// Takes one whole first packet (length word included) off `pending`, reading the socket
/// while it is not all there: one `recv` when the client sent it in one piece. What the
/// client sent after it stays in `pending`.
async fn read_packet(
    stream: &mut ClientStream,
    pending: &mut BytesMut,
) -> Result<BytesMut, ClientError> {
    loop {
        let want = match pending.first_chunk::<4>() {
            Some(&head) => {
                let len =
                    startup::packet_len(head).map_err(|e| ClientError::protocol(e.to_string()))?;
                if pending.len() >= len {
                    return Ok(pending.split_to(len));
                }
                len - pending.len()
            }
            None => FIRST_READ,
        };
        pending.reserve(want);
        if stream.read_buf(pending).await? == 0 {
            return Err(ClientError::Eof);
        }
    }
}
