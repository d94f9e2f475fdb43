//! Sequence values are per backend: `currval` and `lastval` answer with what the session
//! itself set with `nextval` or `setval`. In transaction pooling the server a client holds
//! now may carry values other clients set, so a client must never read them, neither by
//! name nor through a column default or a function.
//!
//! Each server records whose values it holds (nobody's, or one client's). A unit that may
//! read or set sequence values (anything but a plain read of allowed functions, or a text
//! naming `currval`/`lastval`), starting on a server that holds another client's values, is
//! preceded by a hidden `DISCARD SEQUENCES`, pipelined with it (no extra round trip): the
//! server then answers as a fresh session would (SQLSTATE 55000, "not yet defined in this
//! session", which pgsluice gives a hint naming transaction pooling), and within one
//! transaction, after its own `INSERT` or `nextval`, the client gets its own values as on a
//! direct connection. Plain reads never pay for it.
//!
//! The discard's answer comes with a flush of its own (every ReadyForQuery flushes), ahead
//! of the unit's: a wake-up of the worker for bytes pgsluice only drops. When nothing
//! else is in flight on the server, the core tells the driver how long that answer is
//! ([`Core::take_quiet_lead`]), and the driver raises the server socket's receive
//! low-water mark one byte past it (`SO_RCVLOWAT`) until its next read: the kernel then
//! wakes the worker only once the unit's answer (at least one 5-byte message) has
//! arrived too. Measured on the routing benchmark's writer (UPDATE, then three SELECTs,
//! 20 clients): 0.8 fewer sleeps per transaction.

use super::Core;
use crate::protocol::{self, fe};

/// The hint added to a 55000 error once pgsluice discarded another client's values.
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
    /// Bytes of the discard's answer at the head of what the server sends next, with
    /// nothing of the client's before them (see [`Core::take_quiet_lead`]); 0 when none.
    quiet_lead: u8,
}

/// The exact answer to the hidden discard: CommandComplete (tag, length, the command tag
/// `DISCARD SEQUENCES` and its NUL) and ReadyForQuery (tag, length, status). An error or
/// a notice instead is only longer.
pub(super) const DISCARD_ANSWER_LEN: u8 = (1 + 4 + 18) + (1 + 4 + 1);

impl Core {
    /// How many bytes at the head of the server's coming answers are the hidden discard's,
    /// which no one waits for: the driver may let the kernel wake it only past them (see
    /// the module's notes). Taken once, as the bytes go out; 0 when there are none.
    #[inline]
    pub fn take_quiet_lead(&mut self) -> usize {
        usize::from(std::mem::take(&mut self.seq.quiet_lead))
    }

    /// A server was attached: this client has set nothing on it yet.
    pub(super) fn seq_attached(&mut self) {
        self.seq.set_here = false;
    }

    /// Whether [`Core::seq_before`] has anything to look at for a frame with `tag` (a
    /// cheap test run on every frame).
    #[inline]
    pub(super) fn seq_may_matter(&self, tag: u8) -> bool {
        self.opaque_check.is_some()
            && !self.seq.set_here
            && matches!(tag, fe::QUERY | fe::PARSE | fe::BIND | fe::FUNCTION_CALL)
    }

    /// The client frame at `cin[*fwd..*fwd + len]` (a Bind maybe in part) goes to the
    /// server; `unit_start` when it begins a unit. When it may touch sequence values on a
    /// server holding another client's, a hidden `DISCARD SEQUENCES` goes first (the
    /// frames before it are flushed). Then the server holds this client's values.
    /// `facts`: the text of a Query or Parse, already scanned.
    pub(super) fn seq_before(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        unit_start: bool,
        facts: Option<&crate::sql::TextFacts>,
    ) {
        let at = *fwd;
        if self.seq.set_here || !matches!(tag, fe::QUERY | fe::PARSE | fe::BIND | fe::FUNCTION_CALL)
        {
            return;
        }
        let Some(check) = &self.opaque_check else {
            return;
        };
        let Some(att) = &self.server else {
            return;
        };
        if att.state.seq_owner == self.id {
            // Only this client's values there: nothing to discard, nothing to mark.
            return;
        }
        let Some(frame) = self.cin.get(at..at + len) else {
            return;
        };
        let allowed = |w: &[u8]| std::str::from_utf8(w).is_ok_and(|w| check.allows_word(w));
        let touches = match (tag, facts) {
            (fe::QUERY | fe::PARSE, Some(f)) => f.touches_sequence_values(|| {
                text_of(tag, frame)
                    .is_some_and(|t| crate::sql::call_candidates(t).any(|w| !allowed(w)))
            }),
            (fe::QUERY | fe::PARSE, None) => {
                text_of(tag, frame).is_some_and(|t| crate::sql::touches_sequence_values(t, allowed))
            }
            // An unnamed statement was looked at in its Parse; a named one is known by
            // its class (unknown: assume the worst).
            (fe::BIND, _) => match bound_statement(frame) {
                Some(b"") => false,
                Some(name) => std::str::from_utf8(name)
                    .ok()
                    .and_then(|n| self.map.names.stmts.get(n))
                    .is_none_or(|s| s.touches_sequences(check)),
                None => true,
            },
            _ => true,
        };
        if !touches {
            return;
        }
        self.seq.set_here = true;
        let owner = att.state.seq_owner;
        let foreign = owner != 0 && owner != self.id;
        if foreign && unit_start {
            self.flush_client_bytes(fwd);
            let sql = "DISCARD SEQUENCES";
            self.sout.push(super::statements::frame(
                fe::QUERY,
                &[sql.as_bytes(), b"\0"],
            ));
            self.map.replies.expect_hidden_query(None);
            self.unnamed_dropped();
            self.seq.hint = true;
            if self.flow.outstanding == 0 {
                // Nothing of the client's is answered before it (the unit about to go
                // is counted after this).
                self.seq.quiet_lead = DISCARD_ANSWER_LEN;
            }
        }
        // Mid-unit (after a Parse in the same batch) nothing can go first: the values
        // are several clients' now, and the next client to read any is given a discard.
        if let Some(att) = &mut self.server {
            att.state.seq_owner = if !foreign || unit_start {
                self.id
            } else {
                u32::MAX
            };
        }
    }
}

/// The SQL text of a Query or Parse frame.
pub(super) fn text_of(tag: u8, frame: &[u8]) -> Option<&[u8]> {
    let body = protocol::body(frame);
    if tag == fe::PARSE {
        let (_, rest) = protocol::cstr_bytes(body)?;
        protocol::cstr_bytes(rest).map(|(q, _)| q)
    } else {
        protocol::cstr_bytes(body).map(|(q, _)| q)
    }
}

/// The statement name of a Bind frame (`None` when not all there).
fn bound_statement(frame: &[u8]) -> Option<&[u8]> {
    let (_, rest) = protocol::cstr_bytes(protocol::body(frame))?;
    protocol::cstr_bytes(rest).map(|(name, _)| name)
}
