//! How a unit or the session ends: the server given back (clean or not), a statement
//! refused, a FATAL error, the session over.

use std::time::Instant;

use bytes::BytesMut;

use super::{Action, Core, Detached, Phase, Release};
use crate::config::PoolMode;
use crate::protocol::build;
use crate::server::{CloseReason, ServerState};

impl Core {
    /// Gives the server back (if held).
    pub(super) fn release(&mut self, how: Release) {
        let Some(mut att) = self.server.take() else {
            return;
        };
        att.state.keep_placeholders();
        if let Some(r) = &mut self.route {
            r.node_active(-1);
            r.lsn_behind = false;
        }
        self.observe.released();
        let cancelled = self
            .timers
            .as_mut()
            .is_some_and(|t| std::mem::take(&mut t.cancel_sent));
        // The record of its statements is the next client's to trust: one that may be
        // wrong is not handed on.
        // So is one whose DISCARD ALL or DEALLOCATE ALL was never seen answered (the
        // answer of a unit behind a missed probe is dropped unread, `ryw.rs`).
        let unsure =
            std::mem::take(&mut self.map.unsure) || std::mem::take(&mut self.map.drop_in_flight);
        // Bytes still queued for the server (the rest of a frame that needs no answer,
        // such as a stray CopyData, when the server's socket was full at the unit's end)
        // would reach it after the next client's: it is closed, not handed on.
        let unsent = !self.sout.is_empty();
        let how = match how {
            Release::Clean if cancelled => Release::Close(CloseReason::QueryTimeout),
            Release::Clean if unsure || unsent => Release::Close(CloseReason::ResetFailed),
            // The client's statements under their own names are never handed on.
            Release::Clean if !att.state.own_names().is_empty() => {
                Release::Close(CloseReason::ResetFailed)
            }
            other => other,
        };
        if how != Release::Clean {
            self.sout.clear();
        }
        self.actions.push_back(Action::Release(Detached(att), how));
    }

    /// Puts a released server's state back into `slot` (its connection's, holding the
    /// placeholder [`Core::attach_from`] left) and keeps the box for the next server.
    pub fn restore(&mut self, server: Detached, slot: &mut ServerState) {
        let mut att = server.0;
        std::mem::swap(&mut att.state, slot);
        self.vacant = Some(att);
    }

    /// Queues a FATAL error for the client.
    pub(super) fn fatal(&mut self, code: &str, message: &str) {
        // A read kept for a retry holds the client's output: the error must not wait
        // behind it (what was held answers a unit that will not be finished).
        self.retry = None;
        self.cout.drop_held();
        let mut buf = BytesMut::new();
        build::error(&mut buf, "FATAL", code, message);
        self.cout.push(buf.freeze());
    }

    /// The session is over.
    pub(super) fn finish(&mut self, reason: String) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        self.phase = Phase::Done;
        self.idle_txn_deadline = None;
        self.chore_deadline = None;
        self.observe.end();
        self.actions.push_back(Action::Close { reason });
    }

    /// The client leaves (or is sent away) with its server possibly still held: the
    /// server is cleaned up for the next client, or closed if it cannot be.
    pub(super) fn end_session(&mut self, reason: String, now: Instant) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        let Some(att) = &self.server else {
            return self.finish(reason);
        };
        let busy = !self.quiet() || matches!(self.phase, Phase::Chore(_) | Phase::Probe(_));
        if busy {
            // PostgreSQL notices a closed socket only when it next writes; a cancel stops
            // the abandoned query now instead of letting it run to the end.
            self.release(Release::CloseAndCancel(CloseReason::ClientGoneMidQuery));
            return self.finish(reason);
        }
        // Whether the reset query runs (and the server's settings and statements are
        // then its defaults).
        let reset = (self.limits.mode == PoolMode::Session || self.state.is_pinned())
            && !self.limits.reset_query.is_empty();
        let mut cleanup = Vec::new();
        if att.state.status != b'I' {
            cleanup.push("ROLLBACK".to_string());
        }
        // The client's statements under their own names (`own_names.rs`).
        let own = self
            .server
            .as_deref_mut()
            .map(|a| a.state.take_own_names())
            .unwrap_or_default();
        cleanup.extend(super::own_names::deallocations(&own));
        if reset {
            cleanup.push(self.limits.reset_query.to_string());
        }
        if cleanup.is_empty() {
            self.release(Release::Clean);
            return self.finish(reason);
        }
        self.start_cleanup(cleanup, reset, reason, now);
    }

    /// When no server can be had for the client's next unit of work (one Query, or
    /// messages up to Sync), answers it with an error instead, as PostgreSQL would a
    /// failed statement, and keeps the session. False when the unit is not whole yet or
    /// is anything else (the caller then ends the session).
    pub(super) fn refuse_unit(&mut self, code: &str, message: &str) -> bool {
        use crate::protocol::{self, fe};
        if self.status != b'I' {
            return false;
        }
        let mut pos = 0;
        let end = loop {
            let rest = self.cin.get(pos..).unwrap_or_default();
            let Ok(Some(h)) = protocol::header(rest, self.limits.max_message) else {
                return false;
            };
            if rest.len() < h.frame_len {
                return false;
            }
            pos += h.frame_len;
            match h.tag {
                fe::QUERY if pos == h.frame_len => break pos,
                fe::SYNC => break pos,
                fe::PARSE | fe::BIND | fe::DESCRIBE | fe::EXECUTE | fe::CLOSE => {}
                _ => return false,
            }
        };
        let _ = self.cin.split_to(end);
        self.flow.c_need = 0;
        let mut buf = BytesMut::new();
        build::error(&mut buf, "ERROR", code, message);
        build::ready_for_query(&mut buf, self.status);
        self.cout.push(buf.freeze());
        true
    }
}
