//! The driver's events besides bytes: a server attached or not, the server or the client
//! gone, time passing, draining and a forced close.

use std::time::Instant;

use super::{Action, AttachError, Attached, Core, Phase, Release};
use crate::registry::clients::ServerLink;
use crate::server::{CloseReason, ServerState};

impl Core {
    /// The checkout the core asked for succeeded (tests: the placeholder left in the
    /// state's place is dropped).
    pub fn attached(
        &mut self,
        state: ServerState,
        node: usize,
        link: std::sync::Arc<ServerLink>,
        now: Instant,
    ) {
        let mut slot = state;
        self.attach_from(&mut slot, node, link, now);
    }

    /// The checkout the core asked for succeeded: the server's state is taken out of
    /// `slot` (its connection's), which is left a placeholder that is never quiet, so
    /// that the connection is closed if it is dropped before [`Core::restore`] puts
    /// the state back.
    pub fn attach_from(
        &mut self,
        slot: &mut ServerState,
        node: usize,
        link: std::sync::Arc<ServerLink>,
        now: Instant,
    ) {
        let mut att = self.vacant.take().unwrap_or_else(|| {
            Box::new(Attached {
                state: ServerState::lent(0),
            })
        });
        std::mem::swap(&mut att.state, slot);
        slot.id = att.state.id;
        slot.status = 0;
        let state = &mut att.state;
        if let Some(r) = &self.route {
            r.node_active(1);
        }
        if state.last_client != self.id
            && let Some(kept) = &mut self.unnamed
            && let (_, on) = &mut **kept
        {
            // Another client used this server since: whatever unnamed statement it holds
            // is not this client's.
            if *on == Some(state.id) {
                *on = None;
            }
        }
        state.last_client = self.id;
        self.server = Some(att);
        self.seq_attached();
        self.observe.attached(link, now);
        self.phase = Phase::Relay;
        let _ = node;
        // A placeholder another client left is no RESET away: another server is asked for.
        if self.placeholders_foreign() {
            self.release(Release::Close(CloseReason::ForeignPlaceholders));
            self.step(now);
            return;
        }
        if self.start_probe(now) {
            return;
        }
        if !self.sync_settings(now) {
            self.step(now);
        }
    }

    /// The checkout the core asked for failed.
    pub fn attach_failed(&mut self, node: usize, err: AttachError, now: Instant) {
        let (code, msg) = match err {
            AttachError::Unreachable(code, why) => {
                if let Some(r) = &mut self.route
                    && r.reading
                {
                    // A replica that cannot be reached: leave it out and choose again.
                    r.db.report_unreachable(node, &why);
                    tracing::warn!(
                        client = self.id,
                        "replica unreachable, choosing another node: {why}"
                    );
                    let unit = r.head.take().unwrap_or(crate::router::route::Unit::Read);
                    match r.choose(unit, Some(node)) {
                        Ok(next) => {
                            self.observe.waiting(next, now);
                            self.actions.push_back(Action::NeedServer { node: next });
                            return;
                        }
                        Err((code, msg)) => (code, msg),
                    }
                } else {
                    (code, why)
                }
            }
            AttachError::Other(code, msg) => (code, msg),
        };
        self.observe.released();
        self.phase = Phase::Relay;
        if self.refuse_unit(&code, &msg) {
            tracing::warn!(client = self.id, code, "statement refused: {msg}");
            self.step(now);
            return;
        }
        self.fatal(&code, &msg);
        self.finish(msg);
    }

    /// The server's socket closed or failed.
    pub fn server_lost(&mut self, why: &str, now: Instant) {
        if self.probe_lost(why, now) {
            return;
        }
        if self.retry.as_ref().is_some_and(|r| r.possible()) {
            self.release(Release::Close(CloseReason::Broken));
            self.requeue_retry(Some(why), now);
            return;
        }
        if self.retry.as_ref().is_some_and(|r| r.discarding) {
            // The replica refused the read (25006) and was lost while its answer was being
            // dropped: the read goes to the primary, as after the refusal's end.
            self.release(Release::Close(CloseReason::Broken));
            if let Some(r) = &self.route {
                r.db.report_unreachable(r.node, why);
            }
            self.requeue_retry(None, now);
            return;
        }
        if matches!(self.phase, Phase::Chore(_)) {
            // The client's own statements were answered: only pgsluice's are lost.
            self.chore_failed(why, now);
            return;
        }
        self.release(Release::Close(CloseReason::Broken));
        let msg = format!("server connection lost: {why}");
        self.fatal("08006", &msg);
        self.finish(msg);
    }

    /// The client's socket closed or failed: clean up and end.
    pub fn client_gone(&mut self, now: Instant) {
        self.cout.clear();
        if std::mem::replace(&mut self.client_left, true) {
            return;
        }
        self.end_session("client disconnected".into(), now);
    }

    /// Time passed: idle-in-transaction and chore deadlines.
    pub fn tick(&mut self, now: Instant) {
        if self.chore_deadline.is_some_and(|d| d <= now) {
            self.chore_deadline = None;
            if matches!(self.phase, Phase::Probe(_)) {
                self.probe_timed_out(now);
            } else {
                self.chore_failed("no answer in time", now);
            }
        }
        if self.idle_txn_deadline.is_some_and(|d| d <= now) {
            self.idle_txn_deadline = None;
            self.release(Release::Close(CloseReason::IdleInTransaction));
            let msg = "terminating connection due to idle-in-transaction timeout";
            self.fatal("25P03", msg);
            self.finish(msg.to_string());
        }
        self.tick_timeouts(now);
    }

    /// pgsluice is draining: the client leaves at its next transaction boundary.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Close now, mid-transaction or not (shutdown timeout, KILL): `code` and `message`
    /// are the client's FATAL error.
    pub fn force_close(&mut self, code: &str, message: &str, reason: CloseReason) {
        self.release(Release::Close(reason));
        self.fatal(code, message);
        self.finish(message.to_string());
    }
}
