//! The worker's session loop: every client session on plain TCP or a Unix socket runs in
//! one task per worker, not a task each. The loop keeps the client sockets in its own
//! epoll set (mio, watched by tokio through [`AsyncFd`]) and polls a session when its
//! socket reports readiness, or when anything else it waits on (its server's socket, a
//! server handed over by the pool, a timer, the shared state, a notification) wakes it:
//! each session's waker puts it on the loop's list. Beside a relay with a tokio task per
//! client this saved the task machinery and the reactor's per-socket bookkeeping on the
//! client side (stop 37, BENCHMARKS.md).
//!
//! Except while the loop has only a few active sessions ([`FEW`]), and for a session's
//! first transactions: such a session keeps its socket in tokio's reactor, which wakes it
//! through its waker as its server's socket does. With one or two clients each wake-up of
//! the loop's own set reports one event, and asking the set which (an `epoll_wait` inside
//! tokio's) was a system call per request on the round trip (stop 39: 0.7-1.3 µs of
//! system time per transaction for one client); with many, one such call reports a
//! batch, cheaper than tokio's per-socket bookkeeping (+515 instructions per transaction
//! at 50 clients with every client in tokio's reactor). A session arrives from its login
//! in tokio's reactor and moves into the set once it has waited [`SETTLE`] times in a busy
//! loop: a client that connects for one transaction never moves (stop 40: two
//! `epoll_ctl` less per connection).
//!
//! A session idle for `park_idle_after` parks where it is: it keeps only its compact form
//! ([`Idle`], about 0.3 KiB instead of its driver's 1.2) and its socket stays in the
//! epoll set; its next byte (or EOF), or any wake-up from the shared state (drain,
//! shutdown, KILL, for every parked client at once), makes it active again. Only what can
//! wait with no timer and no other wake-up parks (see `Driver::lot_due`).
//!
//! TLS sessions keep a task of their own (their bytes go through rustls, which reads and
//! writes tokio sockets); so does every session when the system gives no epoll set.
//!
//! Beside this file: `entry.rs` (how a session comes in, or gets a task of its own),
//! `moves.rs` (a session's changes of state in the loop, and where its socket goes),
//! `wake.rs` (the inbox and each session's waker), `slots.rs`, `sweep.rs` (the task that
//! wakes sessions due to park).
//!
//! # Concurrency note
//! One loop per worker thread (a thread-local), its slots owned by its task. Other tasks
//! reach it only through its inbox (a short mutex): sessions that logged in, and wake-ups
//! (from any thread: a server handed over by another worker, the admin console's KILL).
//! A session's poll runs inside `catch_unwind`: a bug that panics ends that client (its
//! server is cleaned up or closed by its lease), never the loop and its other clients.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mio::Events;
use tokio::io::unix::AsyncFd;

use super::Counted;
use super::driver::{Driver, End, Idle};
use crate::net::ClientStream;
use crate::net::stream::Looped;
use crate::shared::Shared;
use wake::{Lot, SlotWake};

mod entry;
mod moves;
mod slots;
mod sweep;
mod wake;

pub use entry::park;
use slots::Slots;
pub use sweep::sweep;

/// Rounds of the loop (its inbox and epoll set, each a batch) before it lets the worker's
/// other tasks (logins, TLS sessions, the console) run.
const ROUNDS: usize = 8;
/// Events taken from the epoll set per round.
const EVENTS: usize = 256;
/// A session that becomes active while at most this many of the loop's sessions are
/// (itself included) keeps its socket in tokio's reactor rather than the loop's set.
const FEW: usize = 4;
/// A session with its socket in tokio's reactor moves it into the loop's set when it has
/// waited this many times (about eight transactions; and every as many after) while the
/// loop has more than [`FEW`] active sessions. A client that connects for a transaction
/// or two (`pgbench -C`, a short-lived job) never moves: its socket is registered once,
/// as PgBouncer's, instead of three times (tokio's reactor, out of it, the set).
const SETTLE: u8 = 16;

/// A session in the loop, with its socket.
enum Held {
    /// Idle long enough: its compact form, its socket in the epoll set under the slot's
    /// number.
    Parked(Box<Idle>, Looped),
    /// Running (boxed: a slot is memory per parked client, 40 bytes instead of 96).
    Active(Box<Active>),
    /// Between the two (never seen outside a change of state).
    Moving,
}

/// A running session of the loop.
struct Active {
    driver: Box<Driver>,
    /// `ClientStream::Looped` (in the epoll set under the slot's number), or `Plain` or
    /// `Unix` (in tokio's reactor, which wakes the session through `waker`; see [`FEW`]).
    stream: ClientStream,
    /// Puts the session on the loop's list.
    waker: Waker,
    /// The waker's own state (`None` until the session's first activation).
    wake: Option<Arc<SlotWake>>,
    /// How many times it waited with its socket in tokio's reactor (wrapping).
    polls: u8,
}

impl Held {
    fn looped(&mut self) -> Option<&mut Looped> {
        match self {
            Held::Parked(_, l) => Some(l),
            Held::Active(a) => match &mut a.stream {
                ClientStream::Looped(l) => Some(l),
                _ => None,
            },
            Held::Moving => None,
        }
    }
}

/// One client of the loop: its session and socket, and its place in the client count.
struct Entry {
    held: Held,
    count: Counted,
    /// Which of the slot's occupants a wake-up is for (a waker can outlive its session).
    epoch: u32,
}

thread_local! {
    /// This worker's loop, made when its first session arrives.
    static LOT: RefCell<Option<Arc<Lot>>> = const { RefCell::new(None) };
}

/// Keys of loops among the woken sessions.
static NEXT_KEY: AtomicU32 = AtomicU32::new(0x8000_0000);

/// This worker's loop, made (with its task) on first use; `None` when the system gives no
/// epoll set.
fn lot(shared: &Arc<Shared>) -> Option<Arc<Lot>> {
    LOT.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(l) = &*cell
            && !l.inbox().closed
        {
            return Some(l.clone());
        }
        let made = mio::Poll::new().and_then(|poll| {
            let registry = poll.registry().try_clone()?;
            Ok((poll, registry))
        });
        let (poll, registry) = match made {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("no session loop (no epoll set): a task per client: {e}");
                return None;
            }
        };
        // Deprecated because an `AsyncFd` over a bare descriptor could outlive it; the
        // epoll set here is owned by the `mio::Poll` the `AsyncFd` owns, so it stays open
        // and the same until the `AsyncFd` has deregistered it (its drop).
        #[allow(deprecated)]
        let epoll = match AsyncFd::with_interest(poll, tokio::io::Interest::READABLE) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("no session loop: a task per client: {e}");
                return None;
            }
        };
        let lot = Arc::new(Lot {
            inbox: Mutex::default(),
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
        });
        let looper = Looper {
            lot: lot.clone(),
            registry,
            slots: Slots::default(),
            parked: 0,
            shared: shared.clone(),
            epoch: 0,
            woken: Vec::new(),
            now: None,
        };
        // Unconstrained: the loop is many sessions' work in one task, and tokio's budget
        // (meant for one) would make their server sockets report "not ready" after a
        // hundred reads; the loop yields by itself after `ROUNDS`.
        tokio::spawn(tokio::task::unconstrained(looper.run(epoll)));
        *cell = Some(lot.clone());
        Some(lot)
    })
}

/// The loop's own state, owned by its task.
struct Looper {
    lot: Arc<Lot>,
    /// Puts sockets in the loop's epoll set.
    registry: mio::Registry,
    slots: Slots,
    /// How many of the slots hold a parked session.
    parked: usize,
    shared: Arc<Shared>,
    /// The last slot occupant's number.
    epoch: u32,
    /// Wake-ups taken from the inbox (kept for their allocation).
    woken: Vec<(u32, u32)>,
    /// The clock, read once per round (at its first use): every session polled in a round
    /// is polled at the same moment, as PgBouncer's cached time per turn of its loop.
    now: Option<Instant>,
}

impl Looper {
    async fn run(mut self, mut epoll: AsyncFd<mio::Poll>) {
        let mut events = Events::with_capacity(EVENTS);
        let mut seen = self.shared.sessions.generation();
        let mut registered = false;
        std::future::poll_fn(|cx| {
            self.poll_turns(&mut epoll, &mut events, &mut seen, &mut registered, cx)
        })
        .await;
        // Only an epoll set that failed ends the loop: its sessions get tasks of their own
        // and the worker's next session makes a new loop.
        self.evacuate();
        self.shared.sessions.remove(self.lot.key);
    }

    /// Up to [`ROUNDS`] rounds of news: ready only when the epoll set failed.
    fn poll_turns(
        &mut self,
        epoll: &mut AsyncFd<mio::Poll>,
        events: &mut Events,
        seen: &mut u64,
        registered: &mut bool,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        for _ in 0..ROUNDS {
            self.now = None;
            let mut busy = false;
            if self
                .shared
                .sessions
                .poll_changed(self.lot.key, seen, registered, cx)
                .is_ready()
            {
                // Drain, shutdown timeout, KILL: every parked session sees it (active ones
                // are woken by their own registration).
                self.wake_parked();
                busy = true;
            }
            busy |= self.take_inbox(cx);
            match epoll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    events.clear();
                    if let Err(e) = guard.get_inner_mut().poll(events, Some(Duration::ZERO))
                        && e.kind() != std::io::ErrorKind::Interrupted
                    {
                        tracing::error!("the session loop's epoll set failed: {e}");
                        return Poll::Ready(());
                    }
                    let mut n = 0;
                    for ev in events.iter() {
                        n += 1;
                        self.event(ev);
                    }
                    if n < EVENTS {
                        // The set is drained: what arrives from now on wakes tokio's
                        // epoll again (every event in an epoll set wakes the sets that
                        // watch it), and a readiness tokio records after the guard was
                        // taken is not cleared by it. Asking the set once more only to
                        // hear "nothing" was one `epoll_wait` per wake-up of the loop.
                        guard.clear_ready();
                    }
                    busy = true;
                }
                Poll::Ready(Err(e)) => {
                    tracing::error!("the session loop's epoll set failed: {e}");
                    return Poll::Ready(());
                }
                Poll::Pending => {}
            }
            if !busy {
                return Poll::Pending;
            }
        }
        // The worker's other tasks get their turn; the loop comes back after them.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Takes in the sessions that arrived and polls those that were woken; true if there
    /// was any.
    fn take_inbox(&mut self, cx: &mut Context<'_>) -> bool {
        let arrivals = {
            let mut inbox = self.lot.inbox();
            inbox.notified = false;
            if !inbox
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inbox.waker = Some(cx.waker().clone());
            }
            std::mem::swap(&mut inbox.woken, &mut self.woken);
            std::mem::take(&mut inbox.arrivals)
        };
        let busy = !arrivals.is_empty() || !self.woken.is_empty();
        for (driver, stream, count) in arrivals {
            self.arrive(driver, stream, count);
        }
        let mut woken = std::mem::take(&mut self.woken);
        for &(slot, epoch) in &woken {
            let slot = slot as usize;
            let Some(e) = self.slots.get_mut(slot) else {
                continue;
            };
            if e.epoch != epoch {
                continue;
            }
            if let Held::Active(a) = &e.held
                && let Some(w) = &a.wake
            {
                // Off the list before the poll: a wake-up during it queues the session
                // again.
                w.queued.swap(false, Ordering::AcqRel);
            }
            self.step(slot, false);
        }
        woken.clear();
        self.woken = woken;
        busy
    }

    /// What the epoll set reports of a client's socket.
    fn event(&mut self, ev: &mio::event::Event) {
        let slot = ev.token().0;
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        let Some(l) = e.held.looped() else {
            return;
        };
        l.mark(ev);
        let ready = l.read_ready();
        match e.held {
            Held::Active(_) => self.step(slot, false),
            // A parked client is back when it sent something (or left).
            Held::Parked(..) if ready => self.step(slot, true),
            Held::Parked(..) | Held::Moving => {}
        }
    }

    /// Every parked session runs again (the shared state changed).
    fn wake_parked(&mut self) {
        for slot in 0..self.slots.list.len() {
            if let Some(Entry {
                held: Held::Parked(..),
                ..
            }) = self.slots.get_mut(slot)
            {
                self.step(slot, true);
            }
        }
    }

    /// Runs the session in `slot` (made active first if `wake`): a bug that panics in it
    /// ends that client only.
    fn step(&mut self, slot: usize, wake: bool) {
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if wake {
                self.activate(slot);
            }
            self.poll(slot);
        }));
        if ran.is_err() {
            self.panicked(slot);
        }
    }

    /// Polls the active session in `slot`, and does what its end of a run asks.
    fn poll(&mut self, slot: usize) {
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        let Held::Active(a) = &mut e.held else {
            return;
        };
        let mut cx = Context::from_waker(&a.waker);
        let now = *self.now.get_or_insert_with(Instant::now);
        match a.driver.poll_session(&mut a.stream, &mut cx, now) {
            Poll::Pending => {
                if !matches!(a.stream, ClientStream::Looped(_)) {
                    a.polls = a.polls.wrapping_add(1);
                    if a.polls % SETTLE == 0 && !self.few_active() {
                        self.settle(slot);
                    }
                }
            }
            Poll::Ready(End::Lot) => self.park_slot(slot),
            Poll::Ready(End::Closed(reason)) => self.close(slot, reason),
        }
    }

    /// A bug panicked in the session in `slot`: that client ends (its lease cleans up or
    /// closes its server), the loop and its other clients go on.
    fn panicked(&mut self, slot: usize) {
        // An entry already out of its slot was dropped by the unwinding, its client count
        // guard counting the panic (`Counted`).
        let Some(e) = self.slots.take(slot) else {
            return;
        };
        self.shared.metrics.panics.fetch_add(1, Ordering::Relaxed);
        let id = match &e.held {
            Held::Active(a) => a.driver.id(),
            Held::Parked(i, _) => {
                self.parked = self.parked.saturating_sub(1);
                i.id()
            }
            Held::Moving => 0,
        };
        tracing::error!(
            client = id,
            "client session panicked (a bug): closing this client and its server connection"
        );
        // Its guards run here; one that panics again must not take the loop down either.
        if catch_unwind(AssertUnwindSafe(|| drop(e))).is_err() {
            tracing::error!(client = id, "a panicked session's cleanup panicked too");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked client costs the loop one slot beside its compact session (`Idle`): the
    /// slots' vector is memory per idle client (issue 14 measures 10,000 of them).
    #[test]
    fn a_slot_stays_small() {
        let slot = std::mem::size_of::<Option<Entry>>();
        let stream = std::mem::size_of::<crate::net::ClientStream>();
        println!("loop slot: {slot} bytes (client stream {stream})");
        assert!(slot <= 40, "a slot is {slot} bytes");
    }
}
