//! The fuzz driver's checks on the core (see `fuzz_harness.rs`): a stall, queues within
//! bounds, every request answered.

use super::Session;
use crate::client::core::Phase;

impl Session {
    /// Whether a core that sits still has client input it could look at: stepped once
    /// more (with its need for bytes put right where it asks for more than the whole
    /// frame at the head of its buffer has), it acts. The driver steps it only when bytes
    /// arrive, so a client waiting for its answers would wait for ever: a stall.
    pub(super) fn kick(&mut self) -> bool {
        let core = &mut self.rig.core;
        if core.cin.is_empty() || core.flow.held || core.flow.c_pass > 0 {
            return false;
        }
        if !matches!(core.phase, Phase::Relay) || core.client_left() {
            return false;
        }
        let head = crate::protocol::header(&core.cin, core.limits.max_message);
        if let Ok(Some(h)) = head
            && h.frame_len <= core.cin.len()
            && core.flow.c_need > core.cin.len()
        {
            core.flow.c_need = h.frame_len;
        }
        if core.flow.c_need > core.cin.len() {
            return false;
        }
        let before = (
            core.cin.len(),
            core.cout.len(),
            core.sout.len(),
            core.actions.len(),
        );
        core.step(self.rig.now);
        before
            != (
                core.cin.len(),
                core.cout.len(),
                core.sout.len(),
                core.actions.len(),
            )
    }

    /// Queues stay within a bound of what came in.
    pub(super) fn check_bounds(&mut self) {
        let core = &self.rig.core;
        let input = self.fed_client + self.fed_server;
        let limit = 4 * input + 64 * 1024;
        let sizes = [
            ("client output", core.cout.len()),
            ("server output", core.sout.len()),
            ("client input", core.cin.len()),
            ("actions", core.actions.len() * 1024),
        ];
        for (what, len) in sizes {
            if len > limit {
                return self.fail(format!("{what} holds {len} bytes after {input} in"));
            }
        }
        if core.cin.len() > self.fed_client {
            self.fail(format!(
                "client input holds {} of {} bytes",
                core.cin.len(),
                self.fed_client
            ));
        }
    }

    /// Whether every well-formed client message was answered: one ReadyForQuery for
    /// each Query, Sync and FunctionCall (`asked`), or the session ended with a FATAL
    /// error, or the client left.
    pub fn check_answered(&mut self, asked: usize, terminated: bool) {
        if self.violation.is_some() || self.gone {
            return;
        }
        let (ready, fatal, torn) = answers(&self.received);
        if self.closed {
            // A server lost in the middle of a message it was streaming to the client
            // leaves the client's stream cut mid-frame: no error can follow that.
            if !fatal && !terminated && !torn {
                self.fail("the session closed without telling the client why".into());
            }
            return;
        }
        if ready != asked {
            let (skipping, swallowed) = self
                .live
                .as_ref()
                .map_or((false, false), |m| (m.skipping, m.swallowed));
            let state = format!(
                "phase {:?}, flow {:?}, server held {} (skipping to Sync {skipping}, a Query \
                 discarded while skipping {swallowed})",
                self.rig.core.phase,
                self.rig.core.flow,
                self.rig.core.has_server()
            );
            self.fail(format!(
                "{asked} requests but {ready} ReadyForQuery; {state}"
            ));
        }
    }
}

/// ReadyForQuery messages in what the client received, whether a FATAL error was,
/// and whether the stream ends inside a frame.
fn answers(bytes: &[u8]) -> (usize, bool, bool) {
    let (mut ready, mut fatal) = (0, false);
    let mut pos = 0;
    while let Ok(Some(h)) =
        crate::protocol::header(bytes.get(pos..).unwrap_or_default(), usize::MAX)
    {
        let Some(frame) = bytes.get(pos..pos + h.frame_len) else {
            break;
        };
        match h.tag {
            b'Z' => ready += 1,
            b'E' => {
                let f = crate::protocol::error_fields(crate::protocol::body(frame));
                fatal |= f.severity == "FATAL";
            }
            _ => {}
        }
        pos += h.frame_len;
    }
    (ready, fatal, pos < bytes.len())
}
