//! The short cut through the client scan for the frames extended-protocol drivers send
//! after their Parse (Bind, Describe, Execute, Sync): most of a unit's frames, and none
//! of them anything a policy changes. Looked at once, they pass on at once.

use std::time::Instant;

use super::Core;
use crate::protocol::{self, fe};

#[cfg(test)]
thread_local! {
    /// Tests compare the full scan with this short cut: set, every
    /// frame takes the full scan.
    pub(super) static SLOW_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Core {
    /// Whether the client frame at the head of `rest` (`len` bytes, maybe not all there) is
    /// one every policy below passes on untouched, only noting that it went: inside a unit
    /// on a server, nothing held, and an Execute, Sync or Flush, or a Bind or Describe of
    /// the unnamed statement or of a portal. Such a frame starts no unit (so neither the
    /// route, the settings nor the unnamed statement's re-send look at it), carries no text,
    /// names no mapped statement, and touches no sequence values on its own (the unnamed
    /// statement's text was looked at in its Parse). `fuzz_mid_unit_short_cut_changes_nothing`
    /// plays conversations both ways.
    pub(super) fn passes_mid_unit(&self, tag: u8, rest: &[u8], len: usize) -> bool {
        #[cfg(test)]
        if SLOW_ONLY.get() {
            return false;
        }
        if !self.flow.batch_open
            || self.server.is_none()
            || self.map.drop_in_flight
            || self.ahead_holds(len)
            || self.refusal_holds(len)
        {
            return false;
        }
        let body = rest
            .get(protocol::HEADER_LEN..len.min(rest.len()))
            .unwrap_or_default();
        match tag {
            fe::EXECUTE | fe::SYNC | fe::FLUSH => true,
            // The portal's name, then the statement's.
            fe::BIND => {
                protocol::cstr_bytes(body).is_some_and(|(_, name)| name.first() == Some(&0))
            }
            fe::DESCRIBE => matches!(body, [b'P', ..] | [b'S', 0, ..]),
            _ => false,
        }
    }

    /// Passes on the frame [`Core::passes_mid_unit`] allowed, as the full scan would.
    pub(super) fn pass_mid_unit(
        &mut self,
        fwd: &mut usize,
        tag: u8,
        len: usize,
        have: usize,
        now: Instant,
    ) {
        self.idle_txn_deadline = None;
        if self.route.as_ref().is_some_and(|r| r.reading) || self.retry.is_some() {
            self.arm_retry(*fwd, len);
        }
        self.observe.client_frame(now);
        if tag == fe::SYNC {
            self.flow.outstanding += 1;
            self.flow.batch_open = false;
        }
        if self.limits.rewrite {
            self.map.replies.expect_forward(tag);
        }
        let n = len.min(have);
        *fwd += n;
        self.flow.c_pass = len - n;
    }
}
