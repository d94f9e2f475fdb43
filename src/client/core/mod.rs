//! The session core: one client's protocol state machine, sans I/O.
//!
//! Client bytes, server bytes, "server attached", "server lost", "client gone" and the
//! time go in; bytes to send (two output queues) and [`Action`]s come out: need a server
//! on node N, release it (clean or not), the session is over. There are no sockets, no
//! runtime and no clock reads in here: every input carries `now`, and the driver
//! ([`super::driver`]) owns the sockets and the pool checkout and does what the actions say.
//! Every protocol edge can therefore be tested with recorded message sequences.
//!
//! # Policies, and the order they see a frame in
//! Each policy is a type in its own file that owns its state; only this core calls them,
//! in this order, and each frame is framed once ([`client`], [`server`]).
//!
//! Client frame:
//! 0. [`mid_unit`]: a Bind, Describe, Execute or Sync inside a unit that no policy below
//!    would change or hold passes on at once (each of them still sees it noted).
//! 1. [`ours`]: `SET pgsluice.*` is answered here, never forwarded.
//! 2. [`route`]: at the start of a unit, the node (a server is asked for, or a write
//!    waits for the replica's answers before moving to the primary).
//! 3. [`state`] sync: before a unit starts on a server whose settings differ from the
//!    client's, pgsluice's own [`chores`] bring them in line.
//! 4. [`sql_prepare`] and [`statements`]: SQL- and protocol-level statement mapping,
//!    which records what the server will owe in [`replies`].
//! 5. [`retry`]: a read on a replica is kept until its answer shows it ran there.
//! 6. [`state`]: the statement's session-state effects (settings, pins).
//! 7. [`observe`]: statistics and the client list.
//! 8. [`write_lsn`]: a lone write outside a transaction block takes the write-LSN read
//!    along in the same write.
//!
//! Server frame: [`retry`] (held back or dropped), [`replies`] (hidden, synthesised,
//! translated), [`state`] (errors, ROLLBACK, ParameterStatus, ReadyForQuery), [`route`]
//! (release, the write LSN: [`write_lsn`]), [`observe`].
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod channels;
mod chores;
mod client;
mod deallocate;
mod ending;
mod events;
mod idle;
mod listen;
mod mid_unit;
mod observe;
mod ours;
mod own_names;
mod parked;
mod prepared_view;
mod probe_sql;
mod replies;
mod retry;
mod route;
mod ryw;
mod sequences;
mod server;
mod spare;
mod sql_prepare;
mod state;
mod statements;
mod text;
mod timeouts;
mod translate;
mod units;
mod unnamed;
mod write_lsn;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

pub use observe::Observe;
pub use parked::Parked;
pub use route::{Endpoint, Route};
pub use spare::Spare;
pub use state::{Pin, SessionState};
pub use statements::Mapping;

use crate::client::outq::OutQueue;
use crate::config::PoolMode;
use crate::server::{CloseReason, ServerState};

/// Longest pgsluice waits for its own statements on a server.
pub const CHORE_TIMEOUT: Duration = Duration::from_secs(5);
/// Stop reading a side while this much is queued for the other.
pub const HIGH_WATER: usize = 256 * 1024;

/// What the driver must do next, besides writing the output queues.
#[derive(Debug)]
pub enum Action {
    /// Check out a server on `node` of the session's database, then call
    /// [`Core::attached`] (or [`Core::attach_failed`]).
    NeedServer { node: usize },
    /// Give the server back: its state returns to the connection ([`Core::restore`]),
    /// which goes back to the pool or is closed.
    Release(Detached, Release),
    /// The session is over: write what is queued to the client (at most a few seconds),
    /// then close.
    Close { reason: String },
    /// Send a cancel request for the query running on the held server (`query_timeout`).
    Cancel,
    /// Apply a LISTEN/UNLISTEN with pgsluice's listener, then call [`Core::listen_done`].
    Listen(crate::listen::Request),
}

/// How a server goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Idle and in a known state: back to the pool.
    Clean,
    /// Closed; its slot is freed.
    Close(CloseReason),
    /// Closed, and a cancel sent for the query it is still running.
    CloseAndCancel(CloseReason),
}

/// Why a checkout failed, as the core needs to know it.
#[derive(Debug)]
pub enum AttachError {
    /// The node could not give a connection (connect or login failed): another may serve
    /// a read. SQLSTATE and message.
    Unreachable(String, String),
    /// Any other failure, as the client's error: SQLSTATE and message.
    Other(String, String),
}

/// Settings fixed for the session's life. One copy is shared by a worker's sessions of
/// the same pool and configuration (every byte of a per-session copy was in every idle
/// client's memory).
#[derive(Debug, Clone)]
pub struct Limits {
    pub mode: PoolMode,
    pub max_message: usize,
    pub idle_txn: Option<Duration>,
    pub reset_query: Arc<str>,
    /// Named statements are mapped (transaction/statement mode with a limit).
    pub rewrite: bool,
    /// `query_timeout`, `transaction_timeout`, `client_idle_timeout` (see `timeouts.rs`).
    /// `None` when none is set (boxed: most sessions have none, and every byte here is in
    /// every client's memory).
    pub timeouts: Option<Box<crate::config::SessionTimeouts>>,
    /// LISTEN/UNLISTEN are served by pgsluice's listener instead of pinning (see
    /// `listen.rs`).
    pub listen_here: bool,
    /// `query_wait_timeout`: how long a transaction waits for a server (`None`: forever).
    pub wait_timeout: Option<Duration>,
    /// `park_idle_after`: an idle client this long leaves its task for its worker's lot
    /// (`None`: never; the driver's concern, kept here with the other settings).
    pub park_after: Option<Duration>,
}

/// The server the session holds. The box outlives the server: given back, it keeps a
/// placeholder state and holds the session's next server (see [`Core::attach_from`]).
#[derive(Debug)]
struct Attached {
    state: ServerState,
}

/// A server the session gives back ([`Action::Release`]): its state, in the session's box.
#[derive(Debug)]
pub struct Detached(Box<Attached>);

impl Detached {
    pub fn state(&self) -> &ServerState {
        &self.0.state
    }

    /// The state alone (the box is not kept: tests).
    pub fn into_state(self) -> ServerState {
        self.0.state
    }
}

/// Where the session stands.
#[derive(Debug)]
enum Phase {
    /// Relaying between the client and its server (if it has one).
    Relay,
    /// A server was asked for ([`Action::NeedServer`]); client input waits.
    Checkout,
    /// pgsluice's own statements run on the server; client input waits. (Boxed: rare,
    /// and the phase is in every client's memory.)
    Chore(Box<chores::Chore>),
    /// A replica is asked whether it has replayed the session's writes (`ryw.rs`);
    /// client input waits.
    Probe(ryw::Probe),
    /// A LISTEN/UNLISTEN is with pgsluice's listener ([`Action::Listen`]); input waits.
    Listening,
    /// The session is over; nothing more is read.
    Done,
}

/// Position in the two byte streams.
#[derive(Debug, Default)]
struct Flow {
    /// Bytes of a client frame still to stream through unexamined.
    c_pass: usize,
    /// Bytes of a server frame still to stream through unexamined.
    s_pass: usize,
    /// Bytes the client buffer must hold before the frame at its head can be examined.
    c_need: usize,
    /// ReadyForQuery messages the server still owes (one per Query, Sync, FunctionCall).
    outstanding: u32,
    /// Extended-protocol messages were sent since the last Sync.
    batch_open: bool,
    /// Client input is held until the server answers what is in flight.
    held: bool,
}

/// One client's session.
pub struct Core {
    /// The client's id (its cancel key's pid).
    pub id: u32,
    limits: Arc<Limits>,
    /// Bytes from the client not yet handled.
    cin: BytesMut,
    /// Bytes for the client.
    pub cout: OutQueue,
    /// Bytes for the server.
    pub sout: OutQueue,
    flow: Flow,
    /// The client-visible transaction status.
    status: u8,
    /// Boxed: an idle client holds none, and its memory is per client.
    server: Option<Box<Attached>>,
    /// The box of the last server given back, with a placeholder state: the next
    /// server's, without an allocation per transaction (kept per worker while idle).
    vacant: Option<Box<Attached>>,
    phase: Phase,
    actions: std::collections::VecDeque<Action>,
    route: Option<Box<Route>>,
    /// Boxed: only reads on a replica have one.
    retry: Option<Box<retry::Retry>>,
    map: Mapping,
    state: SessionState,
    observe: Observe,
    /// When the client, idle inside a transaction, is closed.
    idle_txn_deadline: Option<Instant>,
    /// When pgsluice's own statements on the server are given up on.
    chore_deadline: Option<Instant>,
    /// pgsluice is draining: leave at the next transaction boundary.
    draining: bool,
    /// Faults a test armed (never set by the binary).
    failpoints: Option<Arc<crate::shared::Failpoints>>,
    /// The client left (or sent Terminate): nothing more is read from or sent to it,
    /// while its server may still be cleaned up.
    client_left: bool,
    /// Finds calls of functions outside the read-only allowlist (transaction and statement
    /// mode only): their PL code may change settings out of pgsluice's sight.
    opaque_check: Option<crate::router::Classifier>,
    /// The client's last unnamed Parse meant for a later unit (psql's `\gdesc` parses in
    /// one unit and describes in the next), and the server known to hold it.
    unnamed: Option<Box<(bytes::Bytes, Option<u64>)>>,
    /// Whose sequence values the held server may carry (see [`sequences`]).
    seq: sequences::Sequences,
    /// When the current query, transaction and idle spell began (see `timeouts.rs`).
    timers: Option<Box<timeouts::Timers>>,
    /// Notifications waiting for the client to be between transactions (`listen.rs`).
    notes: Option<Box<listen::Pending>>,
}

impl Core {
    pub fn new(
        id: u32,
        limits: impl Into<Arc<Limits>>,
        state: SessionState,
        map: Mapping,
        route: Option<Box<Route>>,
        observe: Observe,
    ) -> Core {
        Core {
            id,
            limits: limits.into(),
            cin: BytesMut::new(),
            cout: OutQueue::default(),
            sout: OutQueue::default(),
            flow: Flow::default(),
            status: b'I',
            server: None,
            vacant: None,
            phase: Phase::Relay,
            actions: Default::default(),
            route,
            retry: None,
            map,
            state,
            observe,
            idle_txn_deadline: None,
            chore_deadline: None,
            draining: false,
            failpoints: None,
            client_left: false,
            unnamed: None,
            opaque_check: None,
            seq: Default::default(),
            timers: None,
            notes: None,
        }
    }

    /// Watches for function calls outside `classifier`'s allowlist (see `opaque_check`).
    pub fn set_opaque_check(&mut self, classifier: crate::router::Classifier) {
        self.opaque_check = Some(classifier);
    }

    /// Arms the failpoints a test set (see [`crate::shared::Failpoints`]).
    pub fn set_failpoints(&mut self, f: Arc<crate::shared::Failpoints>) {
        self.failpoints = Some(f);
    }

    // ------------------------------------------------------------ inputs

    /// The buffer the driver reads client bytes into.
    pub fn client_buf(&mut self) -> &mut BytesMut {
        &mut self.cin
    }

    /// Client bytes arrived in [`Core::client_buf`]: handle what can be handled now.
    pub fn client_data(&mut self, now: Instant) {
        self.idle_txn_deadline = None;
        if let Some(t) = &mut self.timers {
            t.client_active();
        }
        self.step(now);
    }

    /// The buffer the driver reads server bytes into (`None` without a server).
    pub fn server_buf(&mut self) -> Option<&mut BytesMut> {
        self.server.as_mut().map(|s| &mut s.state.buf)
    }

    /// Server bytes arrived in [`Core::server_buf`].
    pub fn server_data(&mut self, now: Instant) {
        self.step(now);
    }

    /// Handles whatever input is pending on both sides.
    pub fn step(&mut self, now: Instant) {
        if self.server.is_some() {
            self.scan_server(now);
        }
        if !self.cin.is_empty() && self.flow.c_need <= self.cin.len() {
            self.scan_client(now);
        }
        self.note_times(now);
        self.deliver_notifications();
    }

    /// Whether the client has left: its output is dropped, its input no longer read.
    pub fn client_left(&self) -> bool {
        self.client_left
    }

    /// The earliest time [`Core::tick`] must be called.
    #[inline]
    pub fn deadline(&self) -> Option<Instant> {
        // Most sessions have no timeout set and are not idle in a transaction: the
        // driver asks on every pass.
        if self.idle_txn_deadline.is_none()
            && self.chore_deadline.is_none()
            && self.limits.timeouts.is_none()
        {
            return None;
        }
        self.earliest_deadline()
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        [
            self.idle_txn_deadline,
            self.chore_deadline,
            self.timeouts_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------ outputs

    /// The next action for the driver.
    #[inline]
    pub fn next_action(&mut self, now: Instant) -> Option<Action> {
        // Asked on every pass of the driver; almost always there is none.
        if self.actions.is_empty() && !self.draining {
            return None;
        }
        self.next_queued_action(now)
    }

    fn next_queued_action(&mut self, now: Instant) -> Option<Action> {
        if let Some(a) = self.actions.pop_front() {
            return Some(a);
        }
        if self.draining && matches!(self.phase, Phase::Relay) && self.at_boundary() {
            self.fatal("57P01", "pgsluice is shutting down");
            self.end_session("shutdown".into(), now);
            return self.actions.pop_front();
        }
        None
    }

    /// Whether the driver should read more from the client now.
    pub fn wants_client_bytes(&self) -> bool {
        let backed_up = self.cin.len() >= HIGH_WATER
            && (self.flow.held || matches!(self.phase, Phase::Chore(_) | Phase::Probe(_)));
        let over = matches!(self.phase, Phase::Done) || self.client_left;
        !over && self.sout.len() < HIGH_WATER && !backed_up
    }

    /// Whether the driver should read more from the server now.
    pub fn wants_server_bytes(&self) -> bool {
        self.server.is_some() && self.cout.len() < HIGH_WATER
    }

    /// How many client bytes the head frame needs before it can be looked at.
    pub fn client_bytes_needed(&self) -> usize {
        self.flow.c_need.saturating_sub(self.cin.len())
    }

    /// The client holds a server and is between frames with nothing in flight: the server
    /// could be handed to another client as it is (for the checkout guard).
    pub fn server_is_clean(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.state.is_quiet()) && self.quiet()
    }

    /// Whether the session holds a server.
    pub fn has_server(&self) -> bool {
        self.server.is_some()
    }

    /// Whether the session is over.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The session's limits (one copy per pool and configuration snapshot).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The client's entry in the client list.
    pub fn info(&self) -> &crate::registry::clients::ClientInfo {
        &self.observe.info
    }

    /// The client's entry in the client list and its statistics.
    pub fn observe(&mut self) -> &mut Observe {
        &mut self.observe
    }

    /// The node of the session's database the next server must come from (0 without
    /// routing).
    pub fn node(&self) -> usize {
        self.route.as_ref().map_or(0, |r| r.node)
    }

    /// The session's pins, for the console.
    pub fn pins(&self) -> &[Pin] {
        self.state.pins()
    }

    // ------------------------------------------------------------ shared steps

    /// Nothing in flight on the server's side.
    fn quiet(&self) -> bool {
        self.flow.outstanding == 0
            && !self.flow.batch_open
            && self.flow.c_pass == 0
            && self.sout.is_empty()
            && self.map.replies.is_empty()
    }

    /// Between transactions, with nothing in flight.
    fn at_boundary(&self) -> bool {
        match &self.server {
            None => self.cin.is_empty(),
            Some(_) => {
                self.quiet() && self.status == b'I' && self.cin.is_empty() && self.cout.is_empty()
            }
        }
    }
}

/// Shared-access helpers for tests and the driver.
impl Core {
    /// The client's current settings (for tests and the console).
    pub fn settings(&self) -> &Arc<crate::server::varcache::Gucs> {
        &self.state.gucs
    }
}

#[cfg(test)]
mod prepared_view_tests;
#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod statement_tests;
#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
mod fuzz_drop_regressions;
#[cfg(test)]
mod fuzz_harness;
#[cfg(test)]
mod fuzz_inputs;
#[cfg(test)]
mod fuzz_lsn_regressions;
#[cfg(test)]
mod fuzz_model;
#[cfg(test)]
mod fuzz_record_regressions;
#[cfg(test)]
mod fuzz_regressions;
#[cfg(test)]
mod fuzz_retry_regressions;
#[cfg(test)]
mod fuzz_tests;
