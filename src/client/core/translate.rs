//! Putting the server's answer to a rewritten request back in the client's terms: the
//! client named its statement `p`, pgsluice sent `sluice_7`; an error must say `p`, and an
//! error position must point into the text the client sent.

use bytes::{BufMut, Bytes, BytesMut};

use super::replies::Translation;
use crate::protocol::be;

/// The text the client sent with one name token (at bytes `span`) replaced by
/// `server_name`, and how to translate errors about it back.
pub fn splice(
    text: &str,
    span: (usize, usize),
    client_name: &str,
    server_name: &str,
) -> Option<(String, Translation)> {
    let before = text.get(..span.0)?;
    let token = text.get(span.0..span.1)?;
    let after = text.get(span.1..)?;
    // A quoted name needs no blank around it (`PREPARE"a"AS ...`); the unquoted server
    // name does, or it runs into its neighbours (`sluice_1AS`).
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$'));
    let blank_before = word(before.chars().next_back());
    let blank_after = word(after.chars().next());
    let mut out = String::with_capacity(text.len() + server_name.len() + 2);
    out.push_str(before);
    if blank_before {
        out.push(' ');
    }
    out.push_str(server_name);
    if blank_after {
        out.push(' ');
    }
    out.push_str(after);
    let token_chars = token.chars().count() as i64;
    let blanks = i64::from(blank_before) + i64::from(blank_after);
    let t = Translation {
        server_name: server_name.to_string(),
        client_name: client_name.to_string(),
        shift: server_name.chars().count() as i64 + blanks - token_chars,
        after: (before.chars().count() as i64) + token_chars,
        name_start: before.chars().count() as i64,
    };
    Some((out, t))
}

/// An ErrorResponse frame rewritten for the client: the server-side name replaced by the
/// client's in the message and detail, the position moved back into the client's text.
/// `None` when nothing needed changing (or the frame is not a well-formed error).
pub fn error(frame: &[u8], t: &Translation) -> Option<Bytes> {
    if frame.first() != Some(&be::ERROR_RESPONSE) {
        return None;
    }
    let mut fields = frame.get(5..)?;
    let quoted_server = format!("\"{}\"", t.server_name);
    let quoted_client = format!("\"{}\"", t.client_name);
    let mut body = BytesMut::with_capacity(frame.len() + 16);
    let mut changed = false;
    while let Some((&kind, rest)) = fields.split_first() {
        if kind == 0 {
            break;
        }
        let end = rest.iter().position(|&b| b == 0)?;
        let value = std::str::from_utf8(rest.get(..end)?).ok()?;
        fields = rest.get(end + 1..)?;
        let new = match kind {
            b'M' | b'D' if value.contains(&quoted_server) => {
                Some(value.replace(&quoted_server, &quoted_client))
            }
            b'P' => value
                .parse::<i64>()
                .ok()
                .map(|p| position(p, t).to_string()),
            _ => None,
        };
        body.put_u8(kind);
        match new {
            Some(v) => {
                changed |= v != value;
                body.put_slice(v.as_bytes());
            }
            None => body.put_slice(value.as_bytes()),
        }
        body.put_u8(0);
    }
    body.put_u8(0);
    if !changed {
        return None;
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(be::ERROR_RESPONSE);
    out.put_i32(i32::try_from(body.len() + 4).ok()?);
    out.put_slice(&body);
    Some(out.freeze())
}

/// An ErrorResponse frame with SQLSTATE `code`, a message containing `about` and no hint,
/// with `hint` added (`None` for any other frame).
pub fn with_hint(frame: &[u8], code: &str, about: &str, hint: &str) -> Option<Bytes> {
    if frame.first() != Some(&be::ERROR_RESPONSE) {
        return None;
    }
    let fields = frame.get(5..)?;
    let mut rest = fields;
    let (mut code_is, mut about_is) = (false, false);
    while let Some((&kind, more)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = more.iter().position(|&b| b == 0)?;
        let value = more.get(..end)?;
        match kind {
            b'H' => return None,
            b'C' => code_is = value == code.as_bytes(),
            b'M' => {
                about_is = value
                    .windows(about.len().max(1))
                    .any(|w| w == about.as_bytes())
            }
            _ => {}
        }
        rest = more.get(end + 1..)?;
    }
    if !(code_is && about_is) {
        return None;
    }
    // The fields without their terminating zero, then the hint and a new terminator.
    let kept = fields.get(..fields.len().checked_sub(1)?)?;
    let len = 4 + kept.len() + 1 + hint.len() + 1 + 1;
    let mut out = BytesMut::with_capacity(len + 1);
    out.put_u8(be::ERROR_RESPONSE);
    out.put_i32(i32::try_from(len).ok()?);
    out.put_slice(kept);
    out.put_u8(b'H');
    out.put_slice(hint.as_bytes());
    out.put_u8(0);
    out.put_u8(0);
    Some(out.freeze())
}

/// A 1-based character position in the sent text, as a position in the client's.
fn position(p: i64, t: &Translation) -> i64 {
    if p > t.after + t.shift {
        p - t.shift
    } else if p > t.name_start {
        t.name_start + 1
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in fields {
            body.push(*k);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut f = vec![b'E'];
        f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn names_and_positions_are_the_clients() {
        let text = "EXECUTE p(1, 2)";
        let (sent, t) = splice(text, (8, 9), "p", "sluice_12").unwrap();
        assert_eq!(sent, "EXECUTE sluice_12(1, 2)");
        let frame = err(&[
            (b'S', "ERROR"),
            (
                b'M',
                "wrong number of parameters for prepared statement \"sluice_12\"",
            ),
            (b'P', "19"),
        ]);
        let out = error(&frame, &t).unwrap();
        let want = err(&[
            (b'S', "ERROR"),
            (
                b'M',
                "wrong number of parameters for prepared statement \"p\"",
            ),
            (b'P', "11"),
        ]);
        assert_eq!(&out[..], &want[..]);
        // A position before the name does not move; one inside it points at its start.
        assert_eq!(position(3, &t), 3);
        assert_eq!(position(12, &t), 9);
    }

    /// Found by `fuzz_session_routed`: `PREPARE "Quoted"AS SELECT` went to the server as
    /// `PREPARE sluice_1AS SELECT` (a syntax error there), while the mapping recorded
    /// the statement as prepared.
    #[test]
    fn a_quoted_name_run_into_its_neighbours_gets_blanks() {
        let text = "PREPARE\"Quoted\"AS SELECT 1";
        let (sent, t) = splice(text, (7, 15), "Quoted", "sluice_1").unwrap();
        assert_eq!(sent, "PREPARE sluice_1 AS SELECT 1");
        // `AS` is at position 16 in the client's text and 18 in the server's; a
        // position in the server's name points at the client's.
        assert_eq!(position(18, &t), 16);
        assert_eq!(position(10, &t), 8);
        let (sent, _) = splice("EXECUTE \"p\"(1)", (8, 11), "p", "sluice_2").unwrap();
        assert_eq!(sent, "EXECUTE sluice_2(1)");
    }

    #[test]
    fn a_hint_is_added_to_an_error_with_the_code_and_no_hint() {
        let frame = err(&[(b'S', "ERROR"), (b'C', "55000"), (b'M', "not yet")]);
        let out = with_hint(&frame, "55000", "not yet", "pooled").unwrap();
        let want = err(&[
            (b'S', "ERROR"),
            (b'C', "55000"),
            (b'M', "not yet"),
            (b'H', "pooled"),
        ]);
        assert_eq!(&out[..], &want[..]);
        assert!(with_hint(&frame, "42601", "not yet", "pooled").is_none());
        assert!(with_hint(&frame, "55000", "cannot detach", "pooled").is_none());
        assert!(with_hint(&want, "55000", "not yet", "again").is_none());
        assert!(with_hint(b"E\0\0\0\x05", "55000", "", "x").is_none());
        assert!(with_hint(b"E\0\0\0\x06C", "55000", "", "x").is_none());
    }

    #[test]
    fn untouched_errors_are_left_alone() {
        let (_, t) = splice("EXECUTE p", (8, 9), "p", "sluice_1").unwrap();
        let frame = err(&[(b'S', "ERROR"), (b'M', "division by zero")]);
        assert!(error(&frame, &t).is_none());
        assert!(error(b"E\0\0\0\x05", &t).is_none());
    }
}
