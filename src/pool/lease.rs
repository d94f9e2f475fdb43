//! Checked-out connections and counted slots as guards: whatever path a holder leaves
//! by — a return, an error, a panic, a cancelled future, a timeout in the middle of a
//! connect — the pool's count stays right.
//!
//! - [`Lease`]: a server connection out of its pool. Dropped, it goes back when its holder
//!   last said it was clean (and it shows nothing pending), and is closed otherwise.
//! - `Slot`: permission to open one connection, already counted in the pool's total;
//!   dropped before the connection exists, the count goes down again.
//! - `Ticket`: a waiter's place in the queue; dropped, any connection or slot already
//!   granted to it is handed back.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use super::handoff::Receiver;
use super::{Grant, Pool};
use crate::server::{CloseReason, ServerConn};

/// A server connection checked out of `pool`.
///
/// # Returning it
/// [`Lease::checkin`] and [`Lease::discard`] say what to do explicitly. A lease dropped
/// without either is returned only if [`Lease::set_clean`] last said `true` and the
/// connection is idle (`ReadyForQuery` status `I`) with no unread bytes; otherwise it is
/// closed, because nobody can vouch for its state.
pub struct Lease {
    pool: Arc<Pool>,
    conn: Option<Box<ServerConn>>,
    clean: bool,
}

impl Lease {
    pub(super) fn new(pool: Arc<Pool>, conn: Box<ServerConn>) -> Lease {
        Lease {
            pool,
            conn: Some(conn),
            clean: true,
        }
    }

    /// The pool the connection belongs to.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Records whether the connection is at a point where another client could use it.
    #[inline]
    pub fn set_clean(&mut self, clean: bool) {
        self.clean = clean;
    }

    /// Gives the connection back for reuse (closed instead if it shows pending data).
    pub fn checkin(self) {
        self.checkin_at(Instant::now());
    }

    /// [`Lease::checkin`] at `now` (a clock reading the caller has).
    pub fn checkin_at(mut self, now: Instant) {
        if let Some(conn) = self.conn.take() {
            if conn.state.buf.is_empty() {
                self.pool.checkin_at(conn, now);
            } else {
                self.pool.discard(conn, CloseReason::UnexpectedData);
            }
        }
    }

    /// Closes the connection and frees its slot.
    pub fn discard(mut self, reason: CloseReason) {
        if let Some(conn) = self.conn.take() {
            self.pool.discard(conn, reason);
        }
    }
}

impl Deref for Lease {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        // Present from construction until checkin/discard/drop, which consume the lease.
        self.conn
            .as_deref()
            .unwrap_or_else(|| unreachable!("lease without connection"))
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.conn
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("lease without connection"))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.clean && conn.state.is_quiet() {
            self.pool.checkin(conn);
        } else {
            let reason = if std::thread::panicking() {
                CloseReason::Panic
            } else {
                CloseReason::Abandoned
            };
            self.pool.discard(conn, reason);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.pool.key)
            .field("server", &self.conn.as_ref().map(|c| c.state.id))
            .field("clean", &self.clean)
            .finish()
    }
}

/// A counted slot for a connection being opened.
pub(super) struct Slot<P: Deref<Target = Pool>> {
    pub(super) pool: P,
    armed: bool,
}

impl<P: Deref<Target = Pool>> Slot<P> {
    /// Takes charge of a slot already counted in the pool's total.
    pub(super) fn counted(pool: P) -> Slot<P> {
        Slot { pool, armed: true }
    }

    /// The connection exists now (or another guard took charge of the slot).
    pub(super) fn fill(mut self) {
        self.armed = false;
    }
}

impl<P: Deref<Target = Pool>> Drop for Slot<P> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release_slot();
        }
    }
}

/// A waiter's receiving end, which hands back anything granted to it if the waiter leaves.
pub(super) struct Ticket {
    pub(super) pool: Arc<Pool>,
    pub(super) rx: Receiver,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Nothing can be sent after close(); whatever was sent before is taken back here.
        match self.rx.close() {
            Some(Grant::Conn(conn)) => self.pool.checkin(conn),
            Some(Grant::Slot) => self.pool.release_slot(),
            Some(Grant::TimedOut(_)) | None => {}
        }
    }
}
