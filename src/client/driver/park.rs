//! An idle client's wait: once the relay finds nothing to do, what the session keeps
//! only for its next transaction goes to its worker, and the task waits for whatever
//! wakes it (client bytes or EOF, the shared state, a deadline, a notification).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::pool::reached;
use crate::shared::Phase;

use super::Driver;
use crate::net::ClientStream;

/// Where an idle client's wait stands.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Park {
    /// Not idle: the relay runs.
    Active,
    /// Idle, every wake-up registered by the relay's last pass: the next poll is a wake-up.
    Armed,
    /// Idle: each source of a wake-up is polled until one is ready.
    Polling,
}

/// Idle sessions that still hold their task beyond this many on one worker: memory matters
/// more than the few microseconds a trip through the lot costs, and they go to the lot
/// after [`PRESSED_AFTER`] instead of `park_idle_after` (thousands of mostly idle
/// application connections), or after [`PRESSED_AFTER_NEW`] if they logged in within
/// [`NEW`] (a burst of logins).
const PRESSURE: usize = 256;
const PRESSED_AFTER: Duration = Duration::from_millis(100);
/// A login burst's clients mostly wait idle for the others (an application's pool
/// opening its connections, a benchmark's setup), each holding ~2 KiB with its task while
/// the burst lasts, and the allocator keeps that memory after they park: they park sooner.
/// Not every pressed client: one that pauses 50-100 ms between transactions would then
/// make the ~18 µs trip through the lot each time (measured: 33.4 → 38.5 µs per
/// transaction for 400 clients pausing ~75 ms).
const PRESSED_AFTER_NEW: Duration = Duration::from_millis(50);
/// How long after its login a client counts as new.
const NEW: Duration = Duration::from_secs(1);

/// Idle sessions with a task, per worker (each slot written by its own worker's sessions
/// only; padded so that workers do not share a cache line).
#[repr(align(128))]
struct Count(AtomicUsize);
const SLOTS: usize = 64;
static IDLE_TASKS: [Count; SLOTS] = [const { Count(AtomicUsize::new(0)) }; SLOTS];

pub(super) fn idle_here() -> &'static AtomicUsize {
    &IDLE_TASKS[crate::current_worker() % SLOTS].0
}

/// How long an idle session waits before it goes to the lot, given `park_after`: shorter
/// when many idle sessions hold tasks (`pressed`), shortest for a client that logged in a
/// moment ago (`new`, see [`client_park_delay`]).
pub fn park_delay(park_after: Duration, pressed: bool, new: bool) -> Duration {
    match (pressed, new) {
        (false, _) => park_after,
        (true, false) => park_after.min(PRESSED_AFTER),
        (true, true) => park_after.min(PRESSED_AFTER_NEW),
    }
}

/// [`park_delay`] for `client`: new if it logged in within [`NEW`] (a clock set back
/// counts as not new), its login time read only under pressure.
pub fn client_park_delay(
    park_after: Duration,
    pressed: bool,
    client: &crate::registry::clients::ClientInfo,
) -> Duration {
    let new = pressed && client.connected.elapsed().is_ok_and(|age| age < NEW);
    park_delay(park_after, pressed, new)
}

/// Whether some worker holds more than [`PRESSURE`] idle sessions with tasks (read by the
/// sweeper, see `lot::sweep`).
pub fn pressed_anywhere() -> bool {
    IDLE_TASKS.iter().any(|c| c.0.load(Relaxed) > PRESSURE)
}

impl Driver {
    /// The client went idle: what the session keeps only for its next transaction is
    /// kept per worker meanwhile.
    pub(super) fn park(&mut self) {
        if idle_here().fetch_add(1, Relaxed) == PRESSURE {
            // The worker just came under pressure: the sweeper, maybe asleep for half of
            // `park_idle_after`, looks again now.
            self.reg.shared.park_pressure.notify_one();
        }
        let buf = self.core.take_idle_buffer();
        crate::client::buffers::stow(self.core.stow(), buf);
        self.park = if std::mem::take(&mut self.armed) {
            Park::Armed
        } else {
            Park::Polling
        };
    }

    /// The idle client may leave its task for the worker's lot (`lot.rs`): idle
    /// `park_idle_after`, and nothing but its socket to wait on (no deadline, no LISTEN,
    /// no TLS state, no server, pgsluice not draining).
    #[inline]
    pub(super) fn lot_due(&self, client: &ClientStream, now: Instant) -> bool {
        let Some(after) = self.core.limits().park_after else {
            return false;
        };
        // Asked at every wake-up of an idle session, nearly always a moment after it went
        // idle: the shortest delay it could have settles that without the pressure count
        // or a subtraction of instants (~60 instructions per transaction).
        if !reached(self.idle_since, after.min(PRESSED_AFTER_NEW), now) {
            return false;
        }
        let pressed = idle_here().load(Relaxed) > PRESSURE;
        let after = client_park_delay(after, pressed, self.core.info());
        reached(self.idle_since, after, now)
            && self.lease.is_none()
            && self.waiting.is_none()
            && self.listen.is_none()
            && !client.is_tls()
            && self.core.deadline().is_none()
            && self.core.parkable()
            && self.reg.shared.phase() == Phase::Running
    }

    /// What the parked session keeps no longer: its timer, its hand-off slot and its
    /// task's registration for wake-ups (the lot's own registration covers it).
    pub(super) fn leave_for_lot(&mut self) {
        self.timer = None;
        self.timer_at = None;
        self.handoff = None;
        if self.watch.registered {
            self.reg.shared.sessions.remove(self.core.id);
            self.watch.registered = false;
        }
        // Back from the lot, the socket is asked first (it is why the client came back).
        self.park = Park::Polling;
    }

    /// Something woke an idle client: most likely its next bytes.
    pub(super) fn unpark(&mut self) {
        idle_here().fetch_sub(1, Relaxed);
        self.park = Park::Active;
        self.woke = true;
        let (spare, buf) = crate::client::buffers::unstow(self.core.client_buf().capacity() == 0);
        if let Some(spare) = spare {
            self.core.unstow(spare);
        }
        if let Some(buf) = buf {
            *self.core.client_buf() = buf;
        }
    }

    /// An idle client's wait: ready once there is something for the relay to look at
    /// (client bytes or EOF, a wake-up from the shared state, a due deadline, a
    /// notification).
    pub(super) fn poll_parked(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.poll_watch(cx) {
            self.control();
            return Poll::Ready(());
        }
        if self.core.deadline().is_some() && self.poll_timer(Instant::now(), cx) {
            return Poll::Ready(());
        }
        if let Some(l) = &mut self.listen
            && let Poll::Ready(Some(frame)) = l.rx.poll_recv(cx)
        {
            self.core.notification(frame);
            return Poll::Ready(());
        }
        client.poll_read_ready(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_shortens_the_delay_most_for_new_clients() {
        let s = Duration::from_secs;
        assert_eq!(park_delay(s(1), false, true), s(1));
        assert_eq!(park_delay(s(1), true, false), PRESSED_AFTER);
        assert_eq!(park_delay(s(1), true, true), PRESSED_AFTER_NEW);
        // A configured delay shorter than the pressed ones stays.
        let short = Duration::from_millis(10);
        assert_eq!(park_delay(short, true, true), short);
        assert!(PRESSED_AFTER_NEW < PRESSED_AFTER);
    }
}
