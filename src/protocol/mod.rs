//! PostgreSQL wire framing and the few messages pgsluice decodes or builds.
//! Knows nothing of pools, clients or configuration.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod build;
pub mod greeting;
pub mod startup;

/// Bytes in a regular message header: a tag byte and a 4-byte length.
pub const HEADER_LEN: usize = 5;

/// Frontend (client → server) message tags pgsluice looks at.
pub mod fe {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
}

/// Backend (server → client) message tags pgsluice looks at.
pub mod be {
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const AUTHENTICATION: u8 = b'R';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
}

/// The header of a message: its tag and the length of the whole frame (tag included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Bytes of the whole frame, header included.
    pub frame_len: usize,
}

/// A header that cannot start a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("message of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
}

/// Reads the header at the start of `buf`, if five bytes are there.
///
/// A declared length below 4 (it counts itself) or over `max` is an error.
#[inline]
pub fn header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let Some(&[tag, a, b, c, d]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    let frame_len = len as usize + 1;
    if frame_len > max {
        return Err(FrameError::TooLarge(frame_len, max));
    }
    Ok(Some(Header { tag, frame_len }))
}

/// The body of a complete frame (after its header); empty for anything shorter than a
/// header.
#[inline]
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

/// The big-endian u32 at `buf[at..at + 4]`, if there.
pub fn be_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..)?.first_chunk::<4>()?;
    Some(u32::from_be_bytes(*b))
}

/// Reads a NUL-terminated string at the start of `buf`: (the string, the rest after the NUL).
pub fn cstr(buf: &[u8]) -> Option<(&str, &[u8])> {
    let (s, rest) = cstr_bytes(buf)?;
    Some((std::str::from_utf8(s).ok()?, rest))
}

/// [`cstr`] without the UTF-8 check: the bytes before the first NUL, and what follows it.
#[inline]
pub fn cstr_bytes(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    // The empty string (an unnamed statement or portal, as most extended-protocol clients
    // send in every Parse and Bind) without setting up a vector search.
    if let Some((&0, rest)) = buf.split_first() {
        return Some((&[], rest));
    }
    let end = memchr::memchr(0, buf)?;
    Some((buf.get(..end)?, buf.get(end + 1..)?))
}

/// The fields of an ErrorResponse or NoticeResponse body that pgsluice cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

/// Decodes the fields of an ErrorResponse/NoticeResponse body; unknown fields are skipped.
pub fn error_fields(mut body: &[u8]) -> ErrorFields {
    let mut out = ErrorFields::default();
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            break;
        }
        let Some((value, rest)) = cstr(rest) else {
            break;
        };
        match kind {
            b'S' => out.severity = value.to_string(),
            b'C' => out.code = value.to_string(),
            b'M' => out.message = value.to_string(),
            _ => {}
        }
        body = rest;
    }
    out
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_splits_at_the_first_nul() {
        assert_eq!(cstr_bytes(b"\0abc\0"), Some((&b""[..], &b"abc\0"[..])));
        assert_eq!(cstr_bytes(b"ab\0c\0"), Some((&b"ab"[..], &b"c\0"[..])));
        assert_eq!(cstr_bytes(b"\0"), Some((&b""[..], &b""[..])));
        assert_eq!(cstr_bytes(b"abc"), None);
        assert_eq!(cstr_bytes(b""), None);
    }

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(header(b"Q\0\0\0", 100), Ok(None));
        assert_eq!(
            header(b"Q\0\0\0\x05x", 100),
            Ok(Some(Header {
                tag: b'Q',
                frame_len: 6
            }))
        );
    }

    #[test]
    fn header_rejects_bad_lengths() {
        assert_eq!(header(b"Q\0\0\0\x03", 100), Err(FrameError::BadLength(3)));
        assert_eq!(
            header(b"Q\xff\xff\xff\xff", 100),
            Err(FrameError::BadLength(-1))
        );
        assert_eq!(
            header(b"Q\0\0\x10\0", 100),
            Err(FrameError::TooLarge(4097, 100))
        );
    }

    #[test]
    fn error_fields_decode() {
        let body = b"SERROR\0VERROR\0C25006\0Mread only\0\0";
        let f = error_fields(body);
        assert_eq!(
            (f.severity.as_str(), f.code.as_str(), f.message.as_str()),
            ("ERROR", "25006", "read only")
        );
        assert_eq!(error_fields(b"S"), ErrorFields::default());
    }
}
