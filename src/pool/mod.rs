//! Server connection pools, one per (database, user, node): checkout with a FIFO wait,
//! checkin, discard, and the periodic maintenance of idle connections.
//!
//! # Concurrency note
//! All bookkeeping sits under one short `std::sync::Mutex` per pool; nothing awaits while
//! holding it. Connecting and waiting happen outside the lock: a waiter parks on its
//! session's hand-over place (`handoff.rs`, `checkout.rs`) and is handed either a
//! connection or a slot to open one. A connection is owned by exactly one place at a time
//! (the idle list, a waiter's hand-over place, or a client session).

mod check;
mod checkout;
mod handoff;
mod inspect;
mod key;
mod lease;
pub mod limits;
mod maintain;
mod startup;
mod wait;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::protocol::greeting::ServerParams;
use crate::server::varcache::Gucs;
use crate::server::{self, CloseReason, ServerConn, ServerError, ServerTarget};
pub use checkout::{Checkout, Queued, Slow};
pub use handoff::Handoff;
pub use inspect::IdleServer;
pub use key::PoolKey;
pub use lease::Lease;
use lease::Slot;
use limits::Gates;
pub use maintain::{Pools, maintain_all, settings_for};
use wait::{Grant, Waiter};

/// Sizes and timeouts of one pool; replaced whole on reload.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    pub target: ServerTarget,
    pub size: usize,
    pub min_size: usize,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub lifetime: Option<Duration>,
    /// Extra connections for clients that waited longer than `reserve_timeout`.
    pub reserve: usize,
    pub reserve_timeout: Option<Duration>,
    /// The server check: run this query on a connection idle this long before handing
    /// it out (see `check.rs`).
    pub check: Option<(String, Duration)>,
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("timed out after {0:?} waiting for a server connection")]
    Timeout(Duration),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("the pool was removed by a configuration reload")]
    Removed,
}

struct Inner {
    settings: PoolSettings,
    idle: VecDeque<Box<ServerConn>>,
    /// Connections that exist or are being opened, idle or not.
    total: usize,
    waiters: VecDeque<Waiter>,
    /// Parameters reported by the first connection, for clients' startup (with their
    /// ParameterStatus messages, encoded once).
    params: Option<Arc<ServerParams>>,
    /// Recently seen startup settings, shared so that clients with the same settings
    /// hold the same `Arc` and a checkout compares pointers, not maps; each with the
    /// startup values it was made of, so that a login with the same values finds it
    /// without building the settings.
    interned: VecDeque<Interned>,
    removed: bool,
}

/// Startup values and the settings made of them (see `Inner::interned`).
type Interned = (Vec<(String, String)>, Arc<Gucs>);

/// Counters for the admin console and metrics; updated without the lock.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub checkouts: AtomicU64,
    pub wait_timeouts: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub closes: AtomicU64,
}

/// A pool of server connections to one node as one user.
pub struct Pool {
    pub key: PoolKey,
    /// The key's user and database, shared by every client of the pool (its entry in the
    /// client list, its place under the client limits) instead of a copy per client.
    pub user: Arc<str>,
    pub database: Arc<str>,
    pub stats: PoolStats,
    inner: Mutex<Inner>,
    next_id: Arc<AtomicU64>,
    /// The database's and user's limits across pools (see `limits.rs`).
    pub gates: Gates,
}

/// A snapshot of a pool's state, for the admin console and tests.
#[derive(Clone, Debug)]
pub struct PoolSnapshot {
    pub idle: usize,
    pub total: usize,
    pub waiting: usize,
    pub size: usize,
    /// The reserve pool's size, and how many of its connections exist now.
    pub reserve: usize,
    pub reserve_used: usize,
}

impl Pool {
    pub fn new(key: PoolKey, settings: PoolSettings, next_id: Arc<AtomicU64>) -> Pool {
        Pool::with_gates(key, settings, next_id, Gates::open())
    }

    /// A pool whose connections also count against `gates`.
    pub fn with_gates(
        key: PoolKey,
        settings: PoolSettings,
        next_id: Arc<AtomicU64>,
        gates: Gates,
    ) -> Pool {
        Pool {
            gates,
            user: Arc::from(key.user.as_str()),
            database: Arc::from(key.database.as_str()),
            key,
            stats: PoolStats::default(),
            inner: Mutex::new(Inner {
                settings,
                idle: VecDeque::new(),
                total: 0,
                waiters: VecDeque::new(),
                params: None,
                interned: VecDeque::new(),
                removed: false,
            }),
            next_id,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the lists inconsistent in a way
        // worse than losing the pool; keep serving rather than poisoning every client.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> PoolSnapshot {
        let g = self.lock();
        PoolSnapshot {
            idle: g.idle.len(),
            total: g.total,
            waiting: g.waiters.len(),
            size: g.settings.size,
            reserve: g.settings.reserve,
            reserve_used: g.total.saturating_sub(g.settings.size),
        }
    }

    /// Counts one more connection if the pool (up to `limit`) and its gates allow it.
    fn grow(&self, g: &mut Inner, limit: usize) -> bool {
        if g.total < limit && self.gates.try_take() {
            g.total += 1;
            return true;
        }
        false
    }

    /// Counts `n` connections fewer, in the pool and its gates.
    fn shrink(&self, g: &mut Inner, n: usize) {
        g.total -= n;
        self.gates.give(n);
    }

    /// Opens a connection for a slot already counted in `total`, with the current settings.
    ///
    /// Boxed: a connect's state is large and rare; inline, it would be part of every
    /// client task's memory, idle or not.
    fn open_slot(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Box<ServerConn>, PoolError>> + Send + '_>> {
        let (target, timeout) = {
            let g = self.lock();
            (g.settings.target.clone(), g.settings.connect_timeout)
        };
        Box::pin(async move { self.open(&target, timeout).await })
    }

    /// Opens a connection for a slot already counted in `total`; gives the slot back on
    /// error, and if the caller stops waiting before the connection exists.
    async fn open(
        &self,
        target: &ServerTarget,
        timeout: Option<Duration>,
    ) -> Result<Box<ServerConn>, PoolError> {
        let slot = Slot::counted(self);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        match server::connect(target, id, timeout).await {
            Ok(conn) => {
                slot.fill();
                let mut g = self.lock();
                if g.params.is_none() {
                    g.params = Some(Arc::new(ServerParams::new(conn.params.clone())));
                }
                Ok(conn)
            }
            Err(e) => {
                self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }

    /// Returns a clean, idle connection (status `I`) for reuse.
    fn checkin(&self, conn: Box<ServerConn>) {
        self.checkin_at(conn, Instant::now());
    }

    /// [`Pool::checkin`] at `now`.
    fn checkin_at(&self, mut conn: Box<ServerConn>, now: Instant) {
        conn.last_used = now;
        let mut g = self.lock();
        // A reserve connection serves waiters while there are any, and closes after.
        let surplus = g.total > g.settings.size && g.waiters.is_empty();
        // Just used: idle for no time (over only a zero idle timeout), so no clock
        // arithmetic for that; its lifetime may be over.
        let too_old = g.settings.idle_timeout.is_some_and(|t| t.is_zero())
            || g.settings
                .lifetime
                .is_some_and(|l| reached(conn.created, l, now));
        if g.removed || too_old || surplus {
            drop(g);
            self.discard(conn, CloseReason::Lifetime);
            return;
        }
        while let Some(w) = g.waiters.pop_front() {
            match w.tx.send(Grant::Conn(conn)) {
                Ok(()) => return,
                Err(Grant::Conn(c)) => conn = c,
                Err(_) => unreachable!("sent a connection"),
            }
        }
        g.idle.push_back(conn);
    }

    /// Closes a connection that must not be reused, freeing its slot for a waiter.
    fn discard(&self, conn: Box<ServerConn>, reason: CloseReason) {
        tracing::debug!(pool = ?self.key, server = conn.state.id, ?reason, "closing server connection");
        self.stats.closes.fetch_add(1, Ordering::Relaxed);
        conn.close();
        self.release_slot();
    }

    /// Frees one counted slot: hands it to the first live waiter, or lowers the count.
    fn release_slot(&self) {
        let mut g = self.lock();
        if !g.removed && g.total <= g.settings.size {
            while let Some(w) = g.waiters.pop_front() {
                if w.tx.send(Grant::Slot).is_ok() {
                    return;
                }
            }
        }
        self.shrink(&mut g, 1);
    }
}

/// Moves the most recently used idle connection of `worker` to the back, if one is near
/// the back. A connection driven by the client's own thread costs no cross-thread wake-up
/// per read; the scan is bounded so a large idle list costs nothing extra.
fn prefer_local(idle: &mut VecDeque<Box<ServerConn>>, worker: usize) {
    const SCAN: usize = 8;
    let len = idle.len();
    if len < 2 || idle[len - 1].worker == worker {
        return;
    }
    if let Some(i) = (len.saturating_sub(SCAN)..len - 1)
        .rev()
        .find(|&i| idle[i].worker == worker)
    {
        idle.swap(i, len - 1);
    }
}

/// Why an idle connection should be closed now, if it should.
fn expired(s: &PoolSettings, conn: &ServerConn, now: Instant) -> Option<CloseReason> {
    if s.lifetime.is_some_and(|l| reached(conn.created, l, now)) {
        return Some(CloseReason::Lifetime);
    }
    if s.idle_timeout
        .is_some_and(|t| reached(conn.last_used, t, now))
    {
        return Some(CloseReason::IdleTimeout);
    }
    None
}

/// Whether `after` has passed since `since` by `now` (never, when `since + after` is past
/// what an `Instant` holds). An addition and a comparison: `Instant::duration_since`
/// costs about twice as much, and the pool asks up to three times per checkout.
#[inline]
pub(crate) fn reached(since: Instant, after: Duration, now: Instant) -> bool {
    since.checked_add(after).is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_is_reached_at_its_end_and_never_past_what_an_instant_holds() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert!(reached(t0, Duration::ZERO, t0));
        assert!(!reached(t0, s, t0 + s - Duration::from_nanos(1)));
        assert!(reached(t0, s, t0 + s));
        assert!(reached(t0, s, t0 + 2 * s));
        // A huge configured lifetime: never over, and no overflow panic.
        assert!(!reached(t0, Duration::MAX, t0 + s));
    }
}
