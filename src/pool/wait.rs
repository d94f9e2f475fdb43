//! Waiting for a server connection: the FIFO of waiters, what a waiter is granted, and
//! serving (gates with room, the reserve pool) or expiring (deadline passed) those waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Pool;
use super::handoff::Grantee;
use crate::server::ServerConn;

pub(crate) enum Grant {
    Conn(Box<ServerConn>),
    /// Permission to open a new connection (the pool's count already includes it).
    Slot,
    /// The waiter's deadline passed (see [`Pool::expire_waiters`]): it waited this long.
    TimedOut(Duration),
}

/// A client waiting for a connection, in FIFO order.
pub(super) struct Waiter {
    pub(super) tx: Grantee,
    /// When it gets `57014` instead; `None` waits forever.
    pub(super) deadline: Option<Instant>,
    /// When it started waiting (for the reserve pool).
    pub(super) since: Instant,
}

impl Pool {
    /// Hands slots to waiters the pool could not serve at once: those a gate held back
    /// once it has room, and, past `reserve_timeout`, one reserve connection at a time.
    /// Returns whether waiters are still held back by a full gate.
    pub fn serve_waiters(&self, now: Instant) -> bool {
        let mut g = self.lock();
        if g.removed {
            return false;
        }
        loop {
            let Some(front) = g.waiters.front() else {
                return false;
            };
            let size = g.settings.size;
            let reserve_due = g
                .settings
                .reserve_timeout
                .is_some_and(|t| now.duration_since(front.since) >= t);
            let limit = if reserve_due {
                size + g.settings.reserve
            } else {
                size
            };
            if !self.grow(&mut g, limit) {
                return g.total < limit;
            }
            if g.total > size {
                tracing::info!(pool = ?self.key, "opening a reserve pool connection");
            }
            let granted = loop {
                let Some(w) = g.waiters.pop_front() else {
                    break false;
                };
                if w.tx.send(Grant::Slot).is_ok() {
                    break true;
                }
            };
            if !granted {
                self.shrink(&mut g, 1);
                return false;
            }
        }
    }

    /// Whether a client waits for a connection of this pool.
    pub fn has_waiters(&self) -> bool {
        !self.lock().waiters.is_empty()
    }

    /// Fails the waiters whose deadline has passed with `57014`; returns how many.
    pub fn expire_waiters(&self, now: Instant) -> usize {
        let overdue = |w: &Waiter| w.deadline.is_some_and(|d| d <= now);
        let expired = {
            let mut g = self.lock();
            if !g.waiters.iter().any(overdue) {
                return 0;
            }
            let (expired, kept): (VecDeque<Waiter>, _) = std::mem::take(&mut g.waiters)
                .into_iter()
                .partition(overdue);
            g.waiters = kept;
            expired
        };
        // Out of the queue, so nothing else grants them; a waiter that left already is fine.
        let n = expired.len();
        for w in expired {
            let waited = w.deadline.map_or(Duration::ZERO, |d| d - w.since);
            let _ = w.tx.send(Grant::TimedOut(waited));
        }
        n
    }
}
