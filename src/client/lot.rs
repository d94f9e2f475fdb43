//! Parked clients: a client idle between transactions for `park_idle_after` seconds gives
//! up its task and its socket's place in tokio's reactor (about 0.8 KiB between them) and
//! waits in its worker's lot: the session's driver in a slot, the socket in the lot's own
//! epoll set. Its next byte (or EOF) gives it a task again; so does any wake-up from the
//! shared state (drain, shutdown, KILL), for every parked client at once.
//!
//! Only what can wait with no timer and no other wake-up parks (see
//! `Driver::may_leave_for_lot`): no server held, nothing buffered, no deadline, no
//! LISTEN, plain TCP or a Unix socket (a TLS session keeps its task).
//!
//! # Concurrency note
//! One lot per worker thread (a thread-local), filled by that worker's client tasks and
//! emptied by the lot's own task on the same runtime; the mutex around the slots is
//! uncontended in the binary (one single-threaded runtime per worker) and keeps a
//! multi-threaded runtime (tests) correct. A wake-up from the shared state cannot be
//! missed by a client parking as it happens: the client is put in a slot first, and the
//! generation it saw is compared after that (see [`park`]).

use std::cell::RefCell;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Token};
use tokio::io::unix::AsyncFd;

use super::Counted;
use super::driver::{Driver, Idle};
use crate::net::ClientStream;
use crate::shared::Shared;

/// A parked client's socket, out of tokio's reactor.
enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Back in tokio's reactor (needs the runtime's context).
    fn into_client(self) -> std::io::Result<ClientStream> {
        Ok(match self {
            Socket::Tcp(s) => ClientStream::Plain(tokio::net::TcpStream::from_std(s)?),
            Socket::Unix(s) => ClientStream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

/// One parked client: its session and socket, and its place in the client count. The
/// session is boxed: held inline, the slots' vector grew into fresh memory while the
/// boxes fill the holes the login burst left (0.01-0.02 KiB per client more RSS).
struct Entry {
    session: Box<Idle>,
    socket: Socket,
    count: Counted,
}

/// A worker's parked clients.
struct Lot {
    /// Registers sockets in the lot's epoll set (the lot's task polls it).
    registry: mio::Registry,
    slots: Mutex<Slots>,
    /// The lot's key among the sessions woken by the shared state (above every client's
    /// id, which is a cancel key's pid, at most `0x7fff_ffff`).
    key: u32,
    /// Its task ended (its epoll set failed): it takes no more clients.
    closed: std::sync::atomic::AtomicBool,
}

/// The slots, a free list in the vacant ones' places.
#[derive(Default)]
struct Slots {
    list: Vec<Option<Entry>>,
    free: Vec<usize>,
}

impl Slots {
    fn put(&mut self, entry: Entry) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.list[i] = Some(entry);
                i
            }
            None => {
                self.list.push(Some(entry));
                self.list.len() - 1
            }
        }
    }

    fn take(&mut self, i: usize) -> Option<Entry> {
        let e = self.list.get_mut(i)?.take()?;
        self.free.push(i);
        if self.free.len() == self.list.len() {
            // Every client left: the lists' memory goes too.
            *self = Slots::default();
        }
        Some(e)
    }
}

thread_local! {
    /// This worker's lot, made when its first client parks.
    static LOT: RefCell<Option<Arc<Lot>>> = const { RefCell::new(None) };
}

/// Keys of lots among the woken sessions.
static NEXT_KEY: AtomicU32 = AtomicU32::new(0x8000_0000);

/// Parks a client that left its task for the lot (`Driver::run` returned it). When the lot
/// cannot take it (no epoll set, the socket refused), the client gets a task back.
pub fn park(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    let Some(lot) = lot(driver.shared()) else {
        return resume(driver, stream, count);
    };
    let seen = driver.generation_seen();
    let shared = driver.shared().clone();
    let session = match driver.into_idle() {
        Ok(s) => s,
        // Not parkable after all: a task again (it tries again `park_idle_after` on).
        Err(driver) => return resume(driver, stream, count),
    };
    let socket = match stream {
        ClientStream::Plain(s) => s.into_std().map(Socket::Tcp),
        ClientStream::Unix(s) => s.into_std().map(Socket::Unix),
        tls @ ClientStream::Tls(_) => return resume((*session).into_driver(), tls, count),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            // The socket is gone with the error: the session ends as for a lost client.
            tracing::debug!(client = session.id(), "cannot park a client: {e}");
            return;
        }
    };
    let fd = socket.fd();
    // Counted before the lot can let it go (`Lot::leave` counts it out).
    shared.parked.fetch_add(1, Ordering::Relaxed);
    shared.parks.fetch_add(1, Ordering::Relaxed);
    let slot = {
        let mut slots = lot.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.put(Entry {
            session,
            socket,
            count,
        })
    };
    let registered = lot
        .registry
        .register(&mut SourceFd(&fd), Token(slot), Interest::READABLE);
    // A wake-up from the shared state since the client last looked, an epoll set that
    // refused the socket or a lot whose task ended: the client goes back to a task at once.
    if registered.is_err()
        || shared.sessions.generation() != seen
        || lot.closed.load(Ordering::Acquire)
    {
        lot.release(slot);
    }
}

/// A parked client (or one the lot could not take) gets a task again.
fn resume(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    tokio::spawn(serve(driver, stream, count));
}

/// A session's task back from the lot: runs it until it ends or parks again.
async fn serve(driver: Box<Driver>, stream: ClientStream, count: Counted) {
    if let Some((driver, stream)) = driver.run(stream).await {
        park(driver, stream, count);
    }
}

/// This worker's lot, made (with its task) on first use; `None` when the system gives no
/// epoll set.
fn lot(shared: &Arc<Shared>) -> Option<Arc<Lot>> {
    LOT.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(l) = &*cell
            && !l.closed.load(Ordering::Acquire)
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
                tracing::warn!("cannot park idle clients (no epoll set): {e}");
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
                tracing::warn!("cannot park idle clients: {e}");
                return None;
            }
        };
        let lot = Arc::new(Lot {
            registry,
            slots: Mutex::default(),
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            closed: Default::default(),
        });
        tokio::spawn(watch(lot.clone(), epoll, shared.clone()));
        *cell = Some(lot.clone());
        Some(lot)
    })
}

impl Lot {
    /// The client in `slot` leaves the lot for a task of its own.
    fn release(&self, slot: usize) {
        let entry = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(slot);
        if let Some(e) = entry {
            self.leave(e);
        }
    }

    /// Every parked client leaves (the shared state changed: each sees why in its task).
    fn release_all(&self) {
        let all: Vec<Entry> = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let n = slots.list.len();
            (0..n).filter_map(|i| slots.take(i)).collect()
        };
        for e in all {
            self.leave(e);
        }
    }

    fn leave(&self, e: Entry) {
        e.session.shared().parked.fetch_sub(1, Ordering::Relaxed);
        let _ = self.registry.deregister(&mut SourceFd(&e.socket.fd()));
        match e.socket.into_client() {
            Ok(stream) => resume((*e.session).into_driver(), stream, e.count),
            Err(err) => {
                tracing::warn!(client = e.session.id(), "a parked client's socket: {err}");
            }
        }
    }
}

/// The lot's task: gives a parked client a task when its socket is readable (or closed),
/// and every parked client one when the shared state changes.
async fn watch(lot: Arc<Lot>, mut epoll: AsyncFd<mio::Poll>, shared: Arc<Shared>) {
    let mut events = Events::with_capacity(256);
    let mut seen = shared.sessions.generation();
    let mut registered = false;
    std::future::poll_fn(|cx: &mut Context<'_>| -> Poll<()> {
        if shared
            .sessions
            .poll_changed(lot.key, &mut seen, &mut registered, cx)
            .is_ready()
        {
            lot.release_all();
        }
        loop {
            let mut guard = match ready!(epoll.poll_read_ready_mut(cx)) {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!("the parked clients' epoll set failed: {e}");
                    return Poll::Ready(());
                }
            };
            events.clear();
            if let Err(e) = guard
                .get_inner_mut()
                .poll(&mut events, Some(Duration::ZERO))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!("the parked clients' epoll set failed: {e}");
                return Poll::Ready(());
            }
            if events.is_empty() {
                guard.clear_ready();
                continue;
            }
            for ev in events.iter() {
                lot.release(ev.token().0);
            }
        }
    })
    .await;
    // Only an epoll set that failed ends the loop: its clients get their tasks back and the
    // worker's next parking client makes a new lot.
    lot.closed.store(true, Ordering::Release);
    lot.release_all();
    shared.sessions.remove(lot.key);
}

/// Wakes the sessions that may have been idle long enough to park, twice per (shortest)
/// park delay: one sweep instead of a timer per idle spell. A session holding or waiting
/// for a server is never woken; nor is one whose last request began within its delay
/// (when statistics or the slow query log keep that time).
pub async fn sweep(shared: Arc<Shared>) {
    use crate::client::driver::{client_park_delay, park_delay, pressed_anywhere};
    use crate::registry::clients::ClientState;
    loop {
        let after = shared.snapshot.load().config.general.park_idle_after;
        let Some(after) = crate::config::secs(after) else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let shortest = park_delay(after, pressed_anywhere(), true);
        let period = (shortest / 2).clamp(
            std::time::Duration::from_millis(25),
            std::time::Duration::from_secs(5),
        );
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            // A worker just went over the pressure mark (`driver::park`): sweep with
            // the shorter delays from now on, not after this sleep.
            _ = shared.park_pressure.notified() => {}
        }
        // Under pressure now, or still: the delays are the pressed ones.
        let pressed = pressed_anywhere();
        let now = shared.metrics.started.elapsed().as_micros() as u64;
        shared.sessions.nudge_where(|id| {
            shared
                .admin
                .clients
                .with(id, |c| {
                    let delay = client_park_delay(after, pressed, c);
                    let due = now.saturating_sub(delay.as_micros() as u64);
                    c.state() == ClientState::Idle && c.since_us().is_none_or(|s| s <= due)
                })
                .unwrap_or(false)
        });
    }
}
