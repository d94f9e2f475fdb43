//! How other tasks and threads reach a worker's session loop: its inbox (sessions that
//! logged in, sessions woken), and each session's waker, which puts the session on the
//! loop's list once until the loop polls it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Wake, Waker};

use crate::client::Counted;
use crate::client::driver::Driver;
use crate::net::ClientStream;

/// What reaches the loop from other tasks and threads.
#[derive(Default)]
pub(super) struct Inbox {
    /// Sessions that logged in, their sockets still in tokio's reactor (where the loop
    /// keeps them while it has few active sessions, see `lot::FEW`).
    pub(super) arrivals: Vec<(Box<Driver>, ClientStream, Counted)>,
    /// Sessions woken (slot, epoch).
    pub(super) woken: Vec<(u32, u32)>,
    /// The loop's task, woken once per batch of news.
    pub(super) waker: Option<Waker>,
    pub(super) notified: bool,
    /// The loop ended (its epoll set failed): it takes no more sessions.
    pub(super) closed: bool,
}

/// A worker's loop, as other tasks see it.
pub(super) struct Lot {
    pub(super) inbox: Mutex<Inbox>,
    /// The loop's key among the sessions woken by the shared state (above every client's
    /// id, which is a cancel key's pid, at most `0x7fff_ffff`).
    pub(super) key: u32,
}

impl Lot {
    pub(super) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Nothing here can be left half-updated by a panic worse than a lost wake-up.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn woken(&self, slot: u32, epoch: u32) {
        let mut inbox = self.inbox();
        inbox.woken.push((slot, epoch));
        if !std::mem::replace(&mut inbox.notified, true)
            && let Some(w) = &inbox.waker
        {
            w.wake_by_ref();
        }
    }
}

/// A session's waker: puts its slot on the loop's list, once until the loop takes it
/// (as waking a tokio task that is already scheduled does nothing): a session woken a
/// thousand times between two polls is polled once, and the list stays as long as the
/// loop has sessions. Without that, the sweeper's nudges to idle sessions that cannot
/// park (LISTEN) grew the list faster than the loop emptied it (stop 38).
pub(super) struct SlotWake {
    pub(super) lot: Arc<Lot>,
    pub(super) slot: u32,
    pub(super) epoch: u32,
    /// On the loop's list, not yet polled.
    pub(super) queued: AtomicBool,
}

impl SlotWake {
    fn wake_once(&self) {
        // AcqRel, paired with the loop's `swap(false)`: what the waking side wrote before
        // is seen by the poll that the entry already queued leads to.
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.lot.woken(self.slot, self.epoch);
        }
    }
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_once();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_once();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session woken many times before the loop takes its list is on it once; once
    /// taken off (before its poll), the next wake-up queues it again.
    #[test]
    fn a_session_is_on_the_list_once_however_often_woken() {
        let lot = Arc::new(Lot {
            inbox: Mutex::default(),
            key: 0,
        });
        let wake = Arc::new(SlotWake {
            lot: lot.clone(),
            slot: 7,
            epoch: 3,
            queued: AtomicBool::new(false),
        });
        let waker = Waker::from(wake.clone());
        for _ in 0..1000 {
            waker.wake_by_ref();
        }
        assert_eq!(lot.inbox().woken, vec![(7, 3)]);
        wake.queued.swap(false, Ordering::AcqRel);
        waker.wake();
        assert_eq!(lot.inbox().woken, vec![(7, 3), (7, 3)]);
    }
}
