//! Waking every client session at once (shutdown phase changes, KILL) without a lock on
//! the hot path.
//!
//! # Concurrency note
//! A session registers its task's waker once, at login, and removes it at logout; those
//! are the only times it takes the lock. On every wake-up it only loads an atomic
//! generation counter. [`SessionWaker::wake_all`] bumps the counter before it takes the lock
//! and wakes the registered tasks, and a session re-reads the counter after registering,
//! so a change that races with a registration is never missed.
//!
//! (A `tokio::sync::watch` receiver, polled in every session's `select!`, takes a mutex
//! shared with every other session on each poll: one lock per query per client.)

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

/// Registered session tasks and the generation they are woken for.
#[derive(Default)]
pub struct SessionWaker {
    generation: AtomicU64,
    tasks: Mutex<HashMap<u32, Waker>>,
}

impl SessionWaker {
    /// The current generation, for [`SessionWaker::poll_changed`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Wakes every registered session.
    pub fn wake_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for w in tasks.values() {
            w.wake_by_ref();
        }
    }

    /// Ready once the generation differs from `*seen` (and updates `*seen`). Registers the
    /// task of `cx` under `id` on its first poll; a session's task keeps one waker for its
    /// whole life, so later polls touch only the atomic counter.
    #[inline]
    pub fn poll_changed(
        &self,
        id: u32,
        seen: &mut u64,
        registered: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if !*registered {
            return self.register(id, seen, registered, cx);
        }
        let now = self.generation();
        if now != *seen {
            *seen = now;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// [`SessionWaker::poll_changed`] on a session's first poll.
    fn register(
        &self,
        id: u32,
        seen: &mut u64,
        registered: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            tasks.insert(id, cx.waker().clone());
            *registered = true;
        }
        let now = self.generation();
        if now != *seen {
            *seen = now;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Wakes the registered sessions `due` picks, without a change of generation: an
    /// idle session looks whether it has been idle long enough to park
    /// (`park_idle_after`).
    pub fn nudge_where(&self, mut due: impl FnMut(u32) -> bool) {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for (&id, w) in tasks.iter() {
            if due(id) {
                w.wake_by_ref();
            }
        }
    }

    /// Forgets a session's task (at logout).
    pub fn remove(&self, id: u32) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Sessions registered, for tests.
    pub fn registered(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn registers_once_and_is_woken_by_wake_all() {
        let w = SessionWaker::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut seen, mut reg) = (w.generation(), false);
        assert!(w.poll_changed(7, &mut seen, &mut reg, &mut cx).is_pending());
        assert!(reg);
        assert_eq!(w.registered(), 1);
        w.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(w.poll_changed(7, &mut seen, &mut reg, &mut cx).is_ready());
        assert!(w.poll_changed(7, &mut seen, &mut reg, &mut cx).is_pending());
        w.remove(7);
        assert_eq!(w.registered(), 0);
        w.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_change_before_registration_is_seen() {
        let w = SessionWaker::default();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let (mut seen, mut reg) = (w.generation(), false);
        w.wake_all();
        assert!(w.poll_changed(1, &mut seen, &mut reg, &mut cx).is_ready());
    }
}
