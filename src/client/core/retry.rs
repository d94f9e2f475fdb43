//! Self-healing reads: a simple Query sent to a replica as a transaction of its own is
//! kept (by reference) until the replica's answer shows it ran there. If the replica
//! refuses it as a write (SQLSTATE 25006) or dies before any row reached the client, its
//! answer is dropped and the Query goes again, to the primary.

use bytes::Bytes;

use crate::protocol::{self, be};

/// A read that can still be sent elsewhere.
#[derive(Debug, Default)]
pub struct Retry {
    /// The client's Query message (empty until it is sent).
    pub query: Bytes,
    /// Answer messages held back until the first row or completion (RowDescription,
    /// notices), so that a retry leaves no trace.
    pub held: Vec<Bytes>,
    /// The replica refused; its messages up to ReadyForQuery are dropped.
    pub discarding: bool,
}

/// What [`Retry::server_frame`] did with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The read can no longer be retried: release what was held, then handle this
    /// message as usual.
    Disarm,
    /// Held back or dropped.
    Taken,
    /// The replica refused the read, and its answer is over: retry on the primary.
    Retry,
}

impl Retry {
    /// Whether the read may still go elsewhere: it was sent and nothing of its answer
    /// reached the client.
    pub fn possible(&self) -> bool {
        !self.discarding && !self.query.is_empty()
    }

    /// Whether a server message with `tag` must be seen whole by [`Retry::server_frame`].
    pub fn wants_whole(&self, tag: u8) -> bool {
        self.discarding
            || matches!(
                tag,
                be::ROW_DESCRIPTION
                    | be::NOTICE_RESPONSE
                    | be::ERROR_RESPONSE
                    | be::READY_FOR_QUERY
            )
    }

    /// Looks at one whole server message of the read's answer. `Taken` means the caller
    /// holds it back (pushes it to `held`, unless `discarding`) or drops it.
    pub fn server_frame(&mut self, tag: u8, frame: &[u8]) -> Step {
        if !self.discarding {
            match tag {
                be::ROW_DESCRIPTION | be::NOTICE_RESPONSE => return Step::Taken,
                be::ERROR_RESPONSE => {
                    let code = protocol::error_fields(protocol::body(frame)).code;
                    if code != "25006" {
                        return Step::Disarm;
                    }
                    self.discarding = true;
                    self.held.clear();
                    return Step::Taken;
                }
                _ => return Step::Disarm,
            }
        }
        if tag == be::READY_FOR_QUERY {
            Step::Retry
        } else {
            Step::Taken
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Bytes {
        let mut f = vec![tag];
        f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        f.extend_from_slice(body);
        Bytes::from(f)
    }

    #[test]
    fn a_read_only_refusal_is_retried_and_leaves_no_trace() {
        let mut r = Retry {
            query: Bytes::from_static(b"Q"),
            ..Retry::default()
        };
        assert!(r.possible());
        assert_eq!(
            r.server_frame(b'N', &msg(b'N', b"SNOTICE\0\0")),
            Step::Taken
        );
        let err = msg(b'E', b"SERROR\0C25006\0Mread-only\0\0");
        assert_eq!(r.server_frame(b'E', &err), Step::Taken);
        assert!(r.held.is_empty() && !r.possible());
        assert_eq!(r.server_frame(b'Z', &msg(b'Z', b"I")), Step::Retry);
    }

    #[test]
    fn a_row_or_another_error_ends_the_chance() {
        let mut r = Retry {
            query: Bytes::from_static(b"Q"),
            ..Retry::default()
        };
        assert_eq!(r.server_frame(b'T', &msg(b'T', b"\0\0")), Step::Taken);
        assert_eq!(r.server_frame(b'D', &msg(b'D', b"\0\0")), Step::Disarm);
        let mut r = Retry::default();
        let err = msg(b'E', b"SERROR\0C42P01\0Mno table\0\0");
        assert_eq!(r.server_frame(b'E', &err), Step::Disarm);
    }
}
