//! Session timeouts: `query_timeout` (the query is cancelled on the server, which answers
//! the client with 57014), `transaction_timeout` (the transaction is ended: the client is
//! told why with FATAL 25P04 and its server is closed, so the transaction rolls back) and
//! `client_idle_timeout` (a client idle between transactions is closed with FATAL 57P05).
//!
//! Like every other timer of the core, these are deadlines computed from the inputs'
//! `now`: [`Core::deadline`] includes them and [`Core::tick`] acts on them.

use std::time::Instant;

use super::{Action, Core, Phase, Release};
use crate::server::CloseReason;

/// When the session's current query, transaction and idle spell began.
#[derive(Debug, Default)]
pub(super) struct Timers {
    query_since: Option<Instant>,
    txn_since: Option<Instant>,
    idle_since: Option<Instant>,
    /// The running query was cancelled for `query_timeout`.
    query_cancelled: bool,
    /// A cancel went to the held server: it is closed rather than returned, so that a
    /// cancel arriving late cannot stop another client's query.
    pub(super) cancel_sent: bool,
}

impl Timers {
    /// Client bytes arrived: the client is not idle.
    pub(super) fn client_active(&mut self) {
        self.idle_since = None;
    }
}

impl Core {
    /// Notes what the session is doing after an input: a query in flight, a transaction
    /// open, or idle between transactions.
    pub(super) fn note_times(&mut self, now: Instant) {
        if self.limits.timeouts.is_none() {
            return;
        }
        let query = self.flow.outstanding > 0;
        // A statement in flight outside a transaction block is a transaction of its own
        // (as PostgreSQL's transaction_timeout counts it).
        let txn = self.status != b'I' || query;
        let idle = !query
            && !self.flow.batch_open
            && self.status == b'I'
            && self.cin.is_empty()
            && matches!(self.phase, Phase::Relay);
        let t = self.timers.get_or_insert_default();
        if query {
            t.query_since.get_or_insert(now);
        } else {
            t.query_since = None;
            t.query_cancelled = false;
        }
        if txn {
            t.txn_since.get_or_insert(now);
        } else {
            t.txn_since = None;
        }
        if idle {
            t.idle_since.get_or_insert(now);
        } else {
            t.idle_since = None;
        }
    }

    /// The earliest of the timeouts' deadlines.
    pub(super) fn timeouts_deadline(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Done) {
            return None;
        }
        let (Some(limits), Some(t)) = (&self.limits.timeouts, &self.timers) else {
            return None;
        };
        let query = match t.query_cancelled {
            true => None,
            false => t.query_since.zip(limits.query).map(|(s, d)| s + d),
        };
        let txn = t.txn_since.zip(limits.transaction).map(|(s, d)| s + d);
        let idle = t.idle_since.zip(limits.client_idle).map(|(s, d)| s + d);
        [query, txn, idle].into_iter().flatten().min()
    }

    /// Acts on the timeouts whose deadline passed.
    pub(super) fn tick_timeouts(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        let Some(limits) = self.limits.timeouts.as_deref().copied() else {
            return;
        };
        let Some(timers) = self.timers.as_deref() else {
            return;
        };
        let (txn_since, query_since, idle_since, query_cancelled) = (
            timers.txn_since,
            timers.query_since,
            timers.idle_since,
            timers.query_cancelled,
        );
        let due = |since: Option<Instant>, d: Option<std::time::Duration>| {
            since.zip(d).is_some_and(|(s, d)| s + d <= now)
        };
        let timers = self.timers.get_or_insert_default();
        if due(txn_since, limits.transaction) {
            timers.txn_since = None;
            let secs = limits.transaction.map_or(0.0, |d| d.as_secs_f64());
            let msg = format!(
                "terminating connection due to transaction timeout (transaction_timeout = {secs}s): \
                 the transaction was rolled back"
            );
            tracing::info!(client = self.id, "{msg}");
            let how = if self.flow.outstanding > 0 {
                Release::CloseAndCancel(CloseReason::TransactionTimeout)
            } else {
                Release::Close(CloseReason::TransactionTimeout)
            };
            self.release(how);
            self.fatal("25P04", &msg);
            self.finish(msg);
            return;
        }
        if !query_cancelled && due(query_since, limits.query) {
            timers.query_cancelled = true;
            if self.server.is_some() {
                tracing::info!(
                    client = self.id,
                    "query_timeout reached: cancelling the query on the server"
                );
                self.timers.get_or_insert_default().cancel_sent = true;
                self.actions.push_back(Action::Cancel);
            }
        }
        if due(idle_since, limits.client_idle) {
            self.timers.get_or_insert_default().idle_since = None;
            let msg = "terminating connection due to client_idle_timeout";
            self.fatal("57P05", msg);
            self.end_session(msg.to_string(), now);
        }
    }
}

#[cfg(test)]
#[path = "timeouts_tests.rs"]
mod tests;
