//! The async shell around a client's session core: it owns the client socket and the
//! checked-out server (a [`Lease`], so no path can leak it), moves bytes between the
//! sockets and the core's buffers, and does what the core's [`Action`]s say. Everything
//! that decides anything is in [`super::core`].

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::time::Sleep;

use super::core::{Action, Core};
use super::io;
use crate::net::ClientStream;
use crate::pool::{Lease, Pool};
use crate::server::CloseReason;
use crate::shared::{Phase, Shared};

mod ending;
mod idle;
mod listen;
mod park;
mod server;

pub use idle::Idle;
use idle::Kept;
use listen::Listening;
use park::Park;
pub use park::{client_park_delay, park_delay, pressed_anywhere};

/// One client's session: its core and the I/O around it.
pub struct Driver {
    /// First of the fields, so the first dropped: the registries forget the session
    /// before its server is given back.
    reg: Registered,
    core: Core,
    /// Each node's pool, fetched on first use.
    pools: server::NodePools,
    lease: Option<Lease>,
    /// Sleeps until the core's next deadline (`timer_at`).
    timer: Option<std::pin::Pin<Box<Sleep>>>,
    timer_at: Option<Instant>,
    /// The client's link to its listener, from its first LISTEN on.
    listen: Option<Box<Listening>>,
    /// What the session saw last of the shared state's wake-ups.
    watch: Watch,
    /// The relay's last pass ended waiting for the client's next byte, every wake-up
    /// registered (see `park.rs`).
    armed: bool,
    /// The task was woken from the parked wait: client bytes are most likely waiting.
    woke: bool,
    /// The held server's socket has its receive low-water mark raised past an answer of
    /// pgsluice's own (see `poll_io`): set back to 1 at the next read or release.
    lowat: bool,
    park: Park,
    /// What the relay waits on besides its sockets; client input waits meanwhile.
    waiting: Option<Waiting>,
    /// Where the pool hands this session a server it waited for. Kept while the client
    /// idles (about 100 bytes): lent per worker instead, like the core's rings, it cost
    /// ~90 instructions per transaction more (its waker cloned and dropped each time).
    handoff: Option<Arc<crate::pool::Handoff>>,
    /// When the client last went idle (set as it parks: no clock read of its own).
    idle_since: Instant,
    /// The client sent bytes since it last went idle: a wake-up that read nothing (a
    /// nudge from `lot::sweep`) does not start a new idle spell.
    sent: bool,
}

/// How the relay's run ends.
pub enum End {
    /// The session is over, for this reason.
    Closed(String),
    /// Idle long enough: the session waits in its worker's lot (`lot.rs`).
    Lot,
}

/// What the relay waits on besides its sockets.
enum Waiting {
    /// A server for the core (`server.rs`).
    Server(server::ServerWait),
    /// The listener's answer to a LISTEN/UNLISTEN (rare: boxed).
    Listen(std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>),
}

/// What the session saw last of the shared state's wake-ups (see [`crate::wake`]).
struct Watch {
    seen: u64,
    registered: bool,
}

/// What the relay does next.
enum Step {
    /// The shared state changed (drain, shutdown timeout, KILL).
    Control,
    Act(Action),
    /// The client is idle: the relay hands over to the parked wait.
    Idle,
}

impl Driver {
    /// A session of `pool`'s clients.
    pub fn new(core: Core, shared: Arc<Shared>, pool: Arc<Pool>) -> Driver {
        let seen = shared.sessions.generation();
        let mut pools = server::NodePools::default();
        pools.set(pool.key.node, pool);
        let reg = Registered {
            shared,
            id: core.id,
        };
        let kept = Kept { reg, pools, seen };
        let mut driver = Driver::assemble(core, kept, Park::Active);
        // The rings a session that ended (or went idle) left with the worker: the greeting
        // and the first transaction need them.
        if let (Some(spare), _) = crate::client::buffers::unstow(false) {
            driver.core.unstow(spare);
        }
        driver
    }

    /// The shared state the session belongs to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.reg.shared
    }

    pub fn id(&self) -> u32 {
        self.core.id
    }

    /// The session will never park (a TLS client keeps its task): the sweeper need not
    /// wake it to try (`lot::sweep`).
    pub fn never_parks(&self) {
        self.core.info().set_never_parks();
    }

    /// The client's cancel key (pgsluice's own BackendKeyData).
    pub fn cancel_key(&self) -> (u32, u32) {
        let info = self.core.info();
        (info.id, info.secret)
    }

    /// Sends the end of the startup phase to the client: at once, as far as the socket
    /// takes it without waiting (the client's first request can then start on its way
    /// while the session moves to its loop and the login is logged); the rest stays
    /// queued for the session, as does a write error, which its first flush meets again.
    pub fn greet(&mut self, bytes: bytes::Bytes, client: &mut ClientStream) {
        self.core.cout.push(bytes);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = io::poll_flush(&mut self.core.cout, client, &mut cx);
    }

    /// What the client sent before it was greeted (read with its startup or password
    /// message): handled as if read now, after the greeting.
    pub fn pipelined(&mut self, bytes: bytes::BytesMut) {
        *self.core.client_buf() = bytes;
        self.core.client_data(Instant::now());
        self.sent = true;
    }

    /// Runs the session until the client leaves (the server it holds is cleaned up or
    /// closed on the way out), or until it has been idle `park_idle_after`: then the
    /// session and its socket are handed back, for the worker's lot (`lot.rs`). For a
    /// session with a task of its own (TLS); the worker's session loop polls the others
    /// itself ([`Driver::begin`], [`Driver::poll_session`], [`Driver::try_end`]).
    ///
    /// The whole session is one poll function ([`Driver::poll_run`]) over the driver's
    /// own fields: no future is made per transaction, and an idle client's task holds
    /// only this future's few words (see [`Core::is_idle`]).
    pub async fn run(
        mut self: Box<Self>,
        mut client: ClientStream,
    ) -> Option<(Box<Self>, ClientStream)> {
        self.begin();
        let run = std::future::poll_fn(|cx| self.poll_run(&mut client, cx, Instant::now()));
        let reason = match run.await {
            End::Lot => return Some((self, client)),
            End::Closed(reason) => reason,
        };
        self.end(client, reason).await;
        None
    }

    /// The start of a run: a session that logged in, or came back from the lot, while
    /// pgsluice drains is told so; it is idle from now, for `park_idle_after`.
    pub fn begin(&mut self) {
        if self.reg.shared.phase() != Phase::Running {
            self.core.drain();
        }
        self.idle_since = Instant::now();
    }

    /// One poll of the session (see [`Driver::poll_run`]) at `now`: ready when it ends or
    /// may wait in the lot.
    #[inline]
    pub fn poll_session(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<End> {
        self.poll_run(client, cx, now)
    }

    /// Relays, waits for what the core asked for, and parks while the client is idle;
    /// ready with the reason once the session ends.
    ///
    /// Everything one poll handles happened at `now`: the session loop reads the clock
    /// once per round of its sessions, as PgBouncer once per turn of its event loop; a
    /// session's own task once per poll.
    fn poll_run(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<End> {
        loop {
            match self.park {
                Park::Active => {}
                Park::Armed | Park::Polling if self.lot_due(client, now) => {
                    if self.poll_watch(cx) {
                        // The shared state changed: seen to here, where a timer can wait.
                        self.control();
                        self.unpark();
                    } else if client.poll_read_ready(cx).is_ready() {
                        // Its next bytes (or EOF) are here: no use parking.
                        self.unpark();
                    } else {
                        self.leave_for_lot();
                        return Poll::Ready(End::Lot);
                    }
                }
                // The relay's last pass, in the poll that parked, registered every wake-up
                // (the client's socket, the shared state, the timer, notifications) and
                // found nothing to do: whatever woke the task is for the relay to see,
                // without asking each source again here.
                Park::Armed => self.unpark(),
                Park::Polling => {
                    ready!(self.poll_parked(client, cx));
                    self.unpark();
                }
            }
            if self.waiting.is_some() {
                ready!(self.poll_waiting(cx, now));
                continue;
            }
            let action = match ready!(self.poll_step(client, cx, now)) {
                Step::Control => {
                    self.control();
                    continue;
                }
                Step::Idle => {
                    if std::mem::take(&mut self.sent) {
                        self.idle_since = now;
                    }
                    self.park();
                    if self.park == Park::Armed {
                        return Poll::Pending;
                    }
                    continue;
                }
                Step::Act(a) => a,
            };
            match action {
                Action::NeedServer { node } => self.checkout(node, now),
                Action::Release(state, how) => self.release(state, how, now),
                Action::Cancel => self.cancel_query(),
                Action::Listen(request) => self.listen(request),
                Action::Close { reason } => return Poll::Ready(End::Closed(reason)),
            }
        }
    }

    /// Polls what the relay waits on besides its sockets (a server, PAUSE, the
    /// listener); ready once it is done and handed to the core.
    fn poll_waiting(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let Some(waiting) = &mut self.waiting else {
            return Poll::Ready(());
        };
        match waiting {
            Waiting::Server(w) => {
                let (node, done) = ready!(w.poll(cx));
                self.waiting = None;
                self.checkout_done(node, done, now);
            }
            Waiting::Listen(f) => {
                let result = ready!(f.as_mut().poll(cx));
                self.waiting = None;
                self.core.listen_done(result, now);
            }
        }
        Poll::Ready(())
    }

    /// Whether the shared state changed (drain, shutdown timeout, KILL) since the session
    /// last looked; registers for the next change otherwise.
    #[inline]
    fn poll_watch(&mut self, cx: &mut Context<'_>) -> bool {
        let (seen, registered) = (&mut self.watch.seen, &mut self.watch.registered);
        self.reg
            .shared
            .sessions
            .poll_changed(self.core.id, seen, registered, cx)
            .is_ready()
    }

    /// The next thing for the relay: a wake-up from the shared state (checked first: an
    /// atomic load, and a busy client must still see it), an action, or idleness.
    fn poll_step(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Poll<Step> {
        if self.poll_watch(cx) {
            return Poll::Ready(Step::Control);
        }
        match self.poll_io(client, cx, now) {
            Poll::Ready(a) => Poll::Ready(Step::Act(a)),
            Poll::Pending if self.core.is_idle() => Poll::Ready(Step::Idle),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A wake-up from the shared state: drain, shutdown timeout, KILL.
    fn control(&mut self) {
        if self.core.observe().info.killed() {
            let (code, msg) = crate::registry::control::killed(&self.core.observe().info.database);
            self.core.force_close(&code, &msg, CloseReason::Admin);
            return;
        }
        match self.reg.shared.phase() {
            Phase::Running => {}
            Phase::Draining => self.core.drain(),
            Phase::Closing | Phase::Exit => self.core.force_close(
                "57P01",
                "pgsluice is shutting down (shutdown_timeout reached)",
                CloseReason::Shutdown,
            ),
        }
    }

    /// Moves bytes until the core has an action for the relay to await or end on. The
    /// actions done on the spot (giving a server back, at the end of nearly every
    /// transaction, and sending a cancel) are done here, without leaving the poll.
    fn poll_io(
        &mut self,
        client: &mut ClientStream,
        cx: &mut Context<'_>,
        mut now: Instant,
    ) -> Poll<Action> {
        self.armed = false;
        loop {
            match self.core.next_action(now) {
                Some(Action::Release(state, how)) => {
                    // The answer that ended the transaction goes to the client first: the
                    // check-in (a few hundred instructions) is then off a lone client's
                    // round trip. A failed write is seen again by the flush below.
                    if !self.core.client_left() {
                        let _ = io::poll_flush(&mut self.core.cout, client, cx);
                    }
                    self.release(state, how, now);
                    continue;
                }
                Some(Action::Cancel) => {
                    self.cancel_query();
                    continue;
                }
                Some(a) => return Poll::Ready(a),
                None => {}
            }
            if self.core.client_left() {
                self.core.cout.clear();
            } else if let Poll::Ready(Err(_)) = io::poll_flush(&mut self.core.cout, client, cx) {
                self.core.client_gone(now);
                continue;
            }
            if let Some(lease) = &mut self.lease {
                // An answer of pgsluice's own leads what the server sends next: the kernel
                // wakes the worker only past it (`core/sequences.rs`), until the next read.
                let lead = self.core.take_quiet_lead();
                if lead > 0 {
                    self.lowat |= lease.stream.set_recv_lowat(lead + 1);
                }
                if let Poll::Ready(Err(e)) =
                    io::poll_flush(&mut self.core.sout, &mut lease.stream, cx)
                {
                    self.core.server_lost(&e.to_string(), now);
                    continue;
                }
            }
            if self.poll_timer(now, cx) {
                // The timer's deadline passed by the clock, perhaps not by `now`.
                now = Instant::now();
                self.core.tick(now);
                continue;
            }
            if let Some(l) = &mut self.listen
                && let Poll::Ready(Some(frame)) = l.rx.poll_recv(cx)
            {
                self.core.notification(frame);
                continue;
            }
            if self.core.wants_server_bytes()
                && let Some(lease) = &mut self.lease
                && let Some(buf) = self.core.server_buf()
            {
                let read = io::poll_read_server(&mut lease.stream, buf, cx);
                if read.is_ready() && std::mem::take(&mut self.lowat) {
                    lease.stream.set_recv_lowat(1);
                }
                match read {
                    Poll::Ready(Ok(0)) => {
                        self.core.server_lost("server closed the connection", now);
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.core.observe().tally.bytes_out += n as u64;
                        self.core.server_data(now);
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        self.core.server_lost(&e.to_string(), now);
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if self.core.wants_client_bytes() {
                let want = self.core.client_bytes_needed();
                let likely = std::mem::take(&mut self.woke);
                match io::poll_read_client(client, self.core.client_buf(), want, likely, cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        self.core.client_gone(now);
                        continue;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.sent = true;
                        self.core.observe().tally.bytes_in += n as u64;
                        self.core.client_data(now);
                        continue;
                    }
                    Poll::Pending => self.armed = true,
                }
            }
            return Poll::Pending;
        }
    }

    /// Keeps a timer armed for the core's next deadline; true when it has passed.
    fn poll_timer(&mut self, now: Instant, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.core.deadline() else {
            self.timer_at = None;
            return false;
        };
        if at <= now {
            self.timer_at = None;
            return true;
        }
        if self.timer_at != Some(at) {
            let deadline = tokio::time::Instant::from_std(at);
            match &mut self.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.timer_at = Some(at);
        }
        let fired = match &mut self.timer {
            Some(t) => t.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if fired {
            self.timer_at = None;
        }
        fired
    }
}

/// A logged-in session's places in the shared registries (wake-ups, the client list with
/// its cancel key and its place under the client limits), given up when the session
/// ends, parked or not, however it ends.
pub(super) struct Registered {
    shared: Arc<Shared>,
    id: u32,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let id = self.id;
        if std::thread::panicking() {
            tracing::error!(
                client = id,
                "client session panicked (a bug): closing this client and its server connection"
            );
        }
        self.shared.sessions.remove(id);
        self.shared.admin.clients.remove(id);
    }
}
