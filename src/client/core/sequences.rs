//! Sequence values are per backend: `currval` and `lastval` answer with what the session
//! itself set with `nextval` or `setval`. In transaction pooling the server a client holds
//! now may carry values other clients set, so a client must never read them.
//!
//! Each server records whose values it may hold (none, one client's, several clients').
//! A text that reads sequence values, on a server holding another client's values, at a
//! point where this client has not set any of its own there yet, is preceded by a hidden
//! `DISCARD SEQUENCES`: the server then answers as a fresh session would (SQLSTATE 55000,
//! "not yet defined in this session"), and pgsluice adds a hint naming transaction pooling.
//! Within one transaction, after the client's own `INSERT` or `nextval`, `currval` works as
//! on a direct connection. Costs one round trip, only before such reads.

use std::time::Instant;

use super::chores::Chore;
use super::{CHORE_TIMEOUT, Core, Phase};
use crate::protocol::{self, fe};

/// Several clients' values: nobody's alone.
const MIXED: u32 = u32::MAX;

/// The hint added to a 55000 error after pgsluice discarded another client's values.
pub const HINT: &str = "pgsluice pools server connections per transaction: currval and lastval \
                        see only values this client set on the server connection it holds \
                        now, as earlier in the same transaction";

/// The session's view of sequence values on the server it holds.
#[derive(Debug, Default)]
pub(super) struct Sequences {
    /// The client may have set sequence values on this server since it got it.
    set_here: bool,
    /// Another client's values were discarded on a server this client held: from then on,
    /// a "not yet defined" error gets [`HINT`].
    pub hint: bool,
}

impl Core {
    /// A server was attached: nothing is known of what this client set on it.
    pub(super) fn seq_attached(&mut self) {
        self.seq.set_here = false;
    }

    /// Whether the Query or Parse at `cin[at..at + len]`, at the head of a unit, reads
    /// sequence values the server may hold for another client (it must wait for
    /// [`Core::seq_guard`]).
    pub(super) fn seq_needs_guard(&self, tag: u8, at: usize, len: usize) -> bool {
        if self.opaque_check.is_none() || self.seq.set_here {
            return false;
        }
        let Some(att) = &self.server else {
            return false;
        };
        let owner = att.state.seq_owner;
        owner != 0
            && owner != self.id
            && self
                .cin
                .get(at..at + len)
                .and_then(|f| text_of(tag, f))
                .is_some_and(crate::sql::reads_sequence_values)
    }

    /// Starts the hidden `DISCARD SEQUENCES`; client input waits for it.
    pub(super) fn seq_guard(&mut self, now: Instant) {
        let sql = "DISCARD SEQUENCES";
        self.sout.push(super::statements::frame(
            fe::QUERY,
            &[sql.as_bytes(), b"\0"],
        ));
        self.phase = Phase::Chore(Chore::DiscardSequences);
        self.chore_deadline = Some(now + CHORE_TIMEOUT);
    }

    /// The hidden `DISCARD SEQUENCES` finished: the server holds nobody's values.
    pub(super) fn seq_discarded(&mut self) {
        if let Some(att) = &mut self.server {
            att.state.seq_owner = 0;
            self.seq.hint = true;
        }
    }

    /// The client frame at `cin[at..at + len]` (a Bind maybe in part) goes to the server:
    /// if running it may set sequence values, the server holds (also) this client's.
    pub(super) fn seq_note(&mut self, tag: u8, at: usize, len: usize) {
        let Some(check) = &self.opaque_check else {
            return;
        };
        let Some(frame) = self.cin.get(at..at + len) else {
            return;
        };
        let sets = match tag {
            fe::QUERY | fe::PARSE => text_of(tag, frame).is_some_and(|t| {
                crate::sql::may_set_sequence_values(t, |w| {
                    std::str::from_utf8(w).is_ok_and(|w| check.allows_word(w))
                })
            }),
            // A named statement's text was seen at its Parse, maybe in another unit:
            // assume the worst. An unnamed one was just looked at.
            fe::BIND => protocol::cstr_bytes(protocol::body(frame))
                .and_then(|(_, rest)| protocol::cstr_bytes(rest))
                .is_none_or(|(statement, _)| !statement.is_empty()),
            fe::FUNCTION_CALL => true,
            _ => false,
        };
        if !sets {
            return;
        }
        self.seq.set_here = true;
        if let Some(att) = &mut self.server {
            let owner = &mut att.state.seq_owner;
            if *owner == 0 {
                *owner = self.id;
            } else if *owner != self.id {
                *owner = MIXED;
            }
        }
    }
}

/// The SQL text of a Query or Parse frame.
fn text_of(tag: u8, frame: &[u8]) -> Option<&[u8]> {
    let body = protocol::body(frame);
    if tag == fe::PARSE {
        let (_, rest) = protocol::cstr_bytes(body)?;
        protocol::cstr_bytes(rest).map(|(q, _)| q)
    } else {
        protocol::cstr_bytes(body).map(|(q, _)| q)
    }
}
