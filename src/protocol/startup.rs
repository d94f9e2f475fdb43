//! The untagged first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest.

use std::collections::BTreeMap;

/// Largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

const PROTOCOL_3_0: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// A decoded first packet.
#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    Startup(BTreeMap<String, String>),
    SslRequest,
    GssEncRequest,
    Cancel { pid: u32, secret: u32 },
}

/// Why a first packet was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid length of startup packet")]
    BadLength,
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0")]
    Unsupported(u16, u16),
    #[error("invalid startup packet layout: {0}")]
    Layout(&'static str),
}

/// Reads the length word of a first packet and checks it.
pub fn packet_len(head: [u8; 4]) -> Result<usize, StartupError> {
    let len = u32::from_be_bytes(head) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(StartupError::BadLength);
    }
    Ok(len)
}

/// Decodes a whole first packet (length word included).
pub fn parse(packet: &[u8]) -> Result<StartupPacket, StartupError> {
    let (Some(code), Some(rest)) = (super::be_u32(packet, 4), packet.get(8..)) else {
        return Err(StartupError::BadLength);
    };
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => match (rest.len(), super::be_u32(rest, 0), super::be_u32(rest, 4)) {
            (8, Some(pid), Some(secret)) => Ok(StartupPacket::Cancel { pid, secret }),
            _ => Err(StartupError::Layout("cancel request must be 16 bytes")),
        },
        PROTOCOL_3_0 => parse_params(rest).map(StartupPacket::Startup),
        other => Err(StartupError::Unsupported(
            (other >> 16) as u16,
            other as u16,
        )),
    }
}

fn parse_params(mut rest: &[u8]) -> Result<BTreeMap<String, String>, StartupError> {
    let mut params = BTreeMap::new();
    loop {
        let (key, after) =
            super::cstr(rest).ok_or(StartupError::Layout("unterminated parameter name"))?;
        if key.is_empty() {
            if !after.is_empty() {
                return Err(StartupError::Layout("data after the final terminator"));
            }
            return Ok(params);
        }
        let (value, after) =
            super::cstr(after).ok_or(StartupError::Layout("unterminated parameter value"))?;
        params.insert(key.to_string(), value.to_string());
        rest = after;
    }
}

/// Splits the `options` startup parameter (`-c name=value --name=value`) into settings.
/// Backslash escapes a space, as libpq documents.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("--")
                .or_else(|| w.strip_prefix("-c"))
                .map(str::to_string)
        };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        p.extend(code.to_be_bytes());
        p.extend(body);
        p
    }

    #[test]
    fn startup_params() {
        let p = packet(PROTOCOL_3_0, b"user\0u\0database\0d\0\0");
        let StartupPacket::Startup(m) = parse(&p).unwrap() else {
            panic!()
        };
        assert_eq!(m["user"], "u");
        assert_eq!(m["database"], "d");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0u")).is_err());
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0u\0\0junk")).is_err());
        assert_eq!(
            parse(&packet(0x0002_0000, b"")),
            Err(StartupError::Unsupported(2, 0))
        );
        assert!(parse(&packet(CANCEL_REQUEST, b"123")).is_err());
        assert_eq!(packet_len([0, 0, 0, 3]), Err(StartupError::BadLength));
        assert_eq!(packet_len([0xff, 0, 0, 0]), Err(StartupError::BadLength));
    }

    #[test]
    fn options_split() {
        assert_eq!(
            parse_options("-c search_path=a\\ b --statement-timeout=5s -csome.x=1"),
            vec![
                ("search_path".into(), "a b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("some.x".into(), "1".into())
            ]
        );
    }
}
