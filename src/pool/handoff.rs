//! The hand-over of a connection (or a slot, or a timeout) from the pool to a waiting
//! checkout: a one-value channel that a session keeps for its whole life and uses for
//! each of its waits.
//!
//! A `tokio::sync::oneshot` per wait cost about 550 instructions per transaction when 50
//! clients share 20 servers (nearly every checkout waits; issue 11): its allocation and
//! free, its waker clone and drop, the runtime's budget check on each poll. Here nothing
//! is allocated per wait, and the waiting task's waker is kept across waits (a session is
//! always the same task). Each wait has a generation: what the pool holds for an earlier
//! wait (a waiter that left) can no longer deliver into a later one.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::wait::Grant;

/// One session's hand-over place (shared with the pool's queue while it waits).
#[derive(Default)]
pub struct Handoff {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The current wait's number.
    generation: u64,
    stage: Stage,
    /// The waiting task's, kept across waits.
    waker: Option<Waker>,
}

#[derive(Default)]
enum Stage {
    /// No wait, or the waiter left: nothing is accepted.
    #[default]
    Closed,
    Waiting,
    Granted(Grant),
    /// The pool dropped the request without granting anything (the pool was removed).
    Dropped,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can be left half-updated by a panic worse than a lost wake-up.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a wait: the pool's end ([`Grantee`]) and the waiter's ([`Receiver`]).
    pub(super) fn open(self: &Arc<Self>) -> (Grantee, Receiver) {
        let mut g = self.lock();
        g.generation = g.generation.wrapping_add(1);
        g.stage = Stage::Waiting;
        let generation = g.generation;
        drop(g);
        (
            Grantee {
                to: Some(self.clone()),
                generation,
            },
            Receiver {
                from: self.clone(),
                generation,
                over: false,
            },
        )
    }
}

/// The pool's end of a wait.
pub(super) struct Grantee {
    to: Option<Arc<Handoff>>,
    generation: u64,
}

impl Grantee {
    /// Hands `grant` to the waiter; back as `Err` if the waiter left.
    pub(super) fn send(mut self, grant: Grant) -> Result<(), Grant> {
        let Some(to) = self.to.take() else {
            return Err(grant);
        };
        let mut g = to.lock();
        if g.generation != self.generation || !matches!(g.stage, Stage::Waiting) {
            return Err(grant);
        }
        g.stage = Stage::Granted(grant);
        if let Some(w) = &g.waker {
            w.wake_by_ref();
        }
        Ok(())
    }
}

impl Drop for Grantee {
    fn drop(&mut self) {
        let Some(to) = self.to.take() else {
            return;
        };
        let mut g = to.lock();
        if g.generation == self.generation && matches!(g.stage, Stage::Waiting) {
            g.stage = Stage::Dropped;
            if let Some(w) = &g.waker {
                w.wake_by_ref();
            }
        }
    }
}

/// The waiter's end of a wait. Dropped, whatever was granted meanwhile is handed back
/// to the caller of [`Receiver::close`] (see `lease.rs`'s `Ticket`).
pub(super) struct Receiver {
    from: Arc<Handoff>,
    generation: u64,
    /// The wait ended in a poll: nothing more can come, and closing takes no lock.
    over: bool,
}

impl Receiver {
    /// Ready with the grant, or `Err(())` if the pool dropped the request.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Grant, ()>> {
        if self.over {
            return Poll::Ready(Err(()));
        }
        let mut g = self.from.lock();
        if g.generation != self.generation {
            self.over = true;
            return Poll::Ready(Err(()));
        }
        // Taking the stage leaves it closed: nothing more is accepted.
        match std::mem::take(&mut g.stage) {
            Stage::Granted(grant) => {
                self.over = true;
                Poll::Ready(Ok(grant))
            }
            Stage::Dropped | Stage::Closed => {
                self.over = true;
                Poll::Ready(Err(()))
            }
            Stage::Waiting => {
                g.stage = Stage::Waiting;
                match &mut g.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Ends the wait: nothing is accepted from now on; returns what was granted and not
    /// yet received.
    pub(super) fn close(&mut self) -> Option<Grant> {
        if std::mem::replace(&mut self.over, true) {
            return None;
        }
        let mut g = self.from.lock();
        if g.generation != self.generation {
            return None;
        }
        match std::mem::take(&mut g.stage) {
            Stage::Granted(grant) => Some(grant),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn is_slot(p: Poll<Result<Grant, ()>>) -> bool {
        matches!(p, Poll::Ready(Ok(Grant::Slot)))
    }

    /// A waker that counts its wake-ups, and a hand-over place.
    fn counted() -> (Arc<Count>, Waker, Arc<Handoff>) {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        (count, waker, Arc::new(Handoff::default()))
    }

    #[test]
    fn a_grant_reaches_the_waiter_and_wakes_it_once() {
        let (count, waker, h) = counted();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = h.open();
        assert!(rx.poll(&mut cx).is_pending());
        assert!(rx.poll(&mut cx).is_pending());
        assert!(tx.send(Grant::Slot).is_ok());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(is_slot(rx.poll(&mut cx)));
        // Granted before the first poll: ready at once.
        let (tx, mut rx) = h.open();
        assert!(tx.send(Grant::Slot).is_ok());
        assert!(is_slot(rx.poll(&mut cx)));
    }

    #[test]
    fn an_earlier_waits_grantee_cannot_deliver_into_a_later_wait() {
        let mut cx = Context::from_waker(Waker::noop());
        let h = Arc::new(Handoff::default());
        let (stale, mut first) = h.open();
        assert!(first.close().is_none());
        let (tx, mut rx) = h.open();
        assert!(stale.send(Grant::Slot).is_err(), "the first wait was over");
        assert!(rx.poll(&mut cx).is_pending());
        assert!(tx.send(Grant::TimedOut(Duration::ZERO)).is_ok());
        assert!(matches!(
            rx.poll(&mut cx),
            Poll::Ready(Ok(Grant::TimedOut(_)))
        ));
    }

    #[test]
    fn a_closed_wait_refuses_grants_and_gives_back_what_came_before() {
        let h = Arc::new(Handoff::default());
        let (tx, mut rx) = h.open();
        assert!(tx.send(Grant::Slot).is_ok());
        assert!(matches!(rx.close(), Some(Grant::Slot)));
        let (tx, mut rx) = h.open();
        assert!(rx.close().is_none());
        assert!(matches!(tx.send(Grant::Slot), Err(Grant::Slot)));
    }

    #[test]
    fn a_request_the_pool_drops_ends_the_wait_with_an_error() {
        let (count, waker, h) = counted();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = h.open();
        assert!(rx.poll(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        assert!(matches!(rx.poll(&mut cx), Poll::Ready(Err(()))));
    }
}
