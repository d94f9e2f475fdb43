//! Taking a connection out of a pool: at once when one is idle, after a wait in the FIFO
//! queue, or after connecting.
//!
//! [`Pool::start_checkout`] does what it can without waiting and says what is left: a
//! [`Queued`] place, which a session's driver polls in its own poll function (no future
//! and no allocation: the grant comes through the caller's hand-over place,
//! `handoff.rs`), or, rarely, a boxed [`Slow`] future (a connect, a server check).
//! [`Pool::checkout`] is the same as one `async fn`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use super::handoff::{Handoff, Receiver};
use super::lease::{Slot, Ticket};
use super::wait::{Grant, Waiter};
use super::{Inner, Lease, Pool, PoolError, expired, prefer_local, reached};
use crate::server::ServerConn;

/// A checkout that connects or checks a connection first (rare; boxed, and owning what
/// it needs, so that a session can keep it across polls).
pub type Slow = Pin<Box<dyn Future<Output = Result<Lease, PoolError>> + Send>>;

/// Where a checkout stands after [`Pool::start_checkout`].
pub enum Checkout {
    Ready(Lease),
    /// Waiting in the queue for a connection another client gives back.
    Queued(Queued),
    /// Connecting, or checking an idle connection first. Poll it at once: a connect's
    /// slot is taken charge of on the first poll.
    Slow(Slow),
}

/// A place in a pool's queue. Dropped, whatever was granted to it goes back.
pub struct Queued {
    ticket: Ticket,
}

impl Queued {
    /// Ready once the pool grants a connection ([`Checkout::Ready`]), a slot to open one
    /// ([`Checkout::Slow`]), or an error (the wait timed out, the pool was removed).
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Checkout, PoolError>> {
        let grant = ready!(self.ticket.rx.poll(cx));
        let pool = &self.ticket.pool;
        Poll::Ready(match grant {
            Err(_) => Err(PoolError::Removed),
            Ok(Grant::Conn(c)) => Ok(Checkout::Ready(pool.lease(c))),
            Ok(Grant::TimedOut(waited)) => {
                pool.stats.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                Err(PoolError::Timeout(waited))
            }
            Ok(Grant::Slot) => Ok(Checkout::Slow(pool.clone().connect_counted())),
        })
    }
}

/// What a checkout does after releasing the lock.
enum Next {
    Ready(Box<ServerConn>),
    /// Open a connection: the pool's count already includes it.
    Connect,
    Wait(Receiver),
}

impl Pool {
    /// Takes a server connection, waiting up to `wait` (forever when `None`) in FIFO order.
    ///
    /// A waiter arms no timer of its own: the janitor ([`super::maintain_all`]) expires
    /// waiters whose deadline passed, every [`super::maintain::WAIT_CHECK`] (a timer per
    /// checkout cost ~600 instructions per transaction when clients outnumber servers).
    ///
    /// The connection comes as a [`Lease`]: however the caller leaves, the pool's count
    /// stays right. A checkout cancelled midway (its future dropped while it waits or
    /// connects) gives back whatever it had been granted.
    pub async fn checkout(self: &Arc<Self>, wait: Option<Duration>) -> Result<Lease, PoolError> {
        let mut next = self.start_checkout(wait, &Arc::default(), Instant::now())?;
        loop {
            next = match next {
                Checkout::Ready(lease) => return Ok(lease),
                Checkout::Slow(slow) => return slow.await,
                Checkout::Queued(mut q) => std::future::poll_fn(|cx| q.poll(cx)).await?,
            };
        }
    }

    /// The part of a checkout that needs no waiting: an idle connection, or a place in
    /// the queue (a wait through `handoff`, the caller's for all its waits), or a slot to
    /// connect. `now`: a clock reading the caller has.
    pub fn start_checkout(
        self: &Arc<Self>,
        wait: Option<Duration>,
        handoff: &Arc<Handoff>,
        now: Instant,
    ) -> Result<Checkout, PoolError> {
        let (next, check) = {
            let mut g = self.lock();
            if g.removed {
                return Err(PoolError::Removed);
            }
            let mut stale = Vec::new();
            let next = self.take_idle(&mut g, &mut stale, wait, now, handoff);
            // The check's query is copied only when one is due.
            let check = match (&next, &g.settings.check) {
                (Next::Ready(c), Some(chk)) if reached(c.last_used, chk.1, now) => {
                    Some(chk.clone())
                }
                _ => None,
            };
            drop(g);
            if !stale.is_empty() {
                stale.into_iter().for_each(ServerConn::close);
            }
            (next, check)
        };
        Ok(match next {
            Next::Ready(c) => match check {
                None => Checkout::Ready(self.lease(c)),
                Some(chk) => {
                    let pool = self.clone();
                    Checkout::Slow(Box::pin(async move {
                        match pool.checked(c, Some(chk)).await {
                            Some(c) => Ok(pool.lease(c)),
                            // Closed: another one, from the start.
                            None => pool.checkout(wait).await,
                        }
                    }))
                }
            },
            Next::Connect => Checkout::Slow(self.clone().connect_counted()),
            Next::Wait(rx) => Checkout::Queued(Queued {
                ticket: Ticket {
                    pool: self.clone(),
                    rx,
                },
            }),
        })
    }

    /// Hands a connection out, counted.
    fn lease(self: &Arc<Self>, conn: Box<ServerConn>) -> Lease {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        Lease::new(self.clone(), conn)
    }

    /// Opens a connection for a slot already counted in the pool's total.
    fn connect_counted(self: Arc<Self>) -> Slow {
        // Owned until the future's first poll, where `open` takes charge of the slot: a
        // checkout dropped before that gives it back too.
        let pending = Slot::counted(self);
        Box::pin(async move {
            let pool = pending.pool.clone();
            pending.fill();
            let conn = pool.open_slot().await?;
            Ok(pool.lease(conn))
        })
    }

    // The connections are boxed for their whole life; unboxing them here would copy them.
    #[allow(clippy::vec_box)]
    fn take_idle(
        &self,
        g: &mut Inner,
        stale: &mut Vec<Box<ServerConn>>,
        wait: Option<Duration>,
        now: Instant,
        handoff: &Arc<Handoff>,
    ) -> Next {
        prefer_local(&mut g.idle, crate::current_worker());
        while let Some(mut conn) = g.idle.pop_back() {
            if expired(&g.settings, &conn, now).is_some() || conn.has_unexpected_data() {
                self.shrink(g, 1);
                self.stats.closes.fetch_add(1, Ordering::Relaxed);
                stale.push(conn);
                continue;
            }
            return Next::Ready(conn);
        }
        let size = g.settings.size;
        if self.grow(g, size) {
            return Next::Connect;
        }
        let (tx, rx) = handoff.open();
        let deadline = wait.map(|w| now + w);
        if g.waiters.is_empty() {
            // The janitor checks waiters' deadlines only while some exist (`maintain.rs`).
            super::maintain::WAITING.notify_waiters();
        }
        g.waiters.push_back(Waiter {
            tx,
            deadline,
            since: now,
        });
        Next::Wait(rx)
    }
}
