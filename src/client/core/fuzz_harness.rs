//! The driver of the session core's fuzz target: it plays the client's bytes, the model
//! servers' answers and the driver's events into one core in the order a schedule says,
//! does what the core's actions ask (attach a server from a small pool, give it back),
//! and checks the core's invariants after every step.

use std::sync::Arc;
use std::time::Duration;

use super::fuzz_model::Model;
use super::tests::{Rig, link, rig_limits};
use super::{Action, AttachError, Limits, Release};
use crate::config::PoolMode;
use crate::config::{PrimaryReads, ReadYourWrites};
use crate::prepare::Registry;
use crate::server::{CloseReason, ServerState};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    pub limits: Limits,
    pub startup: Vec<(String, String)>,
    pub max_prepared: usize,
    /// Routing over a primary (node 0) and a replica (node 1), with this policy.
    pub routing: Option<Routing>,
    /// Chance in 256 that a model server fails a statement.
    pub error_rate: u8,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub ryw: bool,
    pub report_lsn: bool,
    pub retry: bool,
    pub never_primary: bool,
}

/// What the driver does when the core asks for a server.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    /// A new connection.
    Fresh,
    /// An idle one from the pool, if any.
    Reuse,
    /// The node cannot be reached.
    Unreachable,
    /// No connection within the wait timeout.
    Timeout,
}

/// One thing that happens.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Up to this many of the client's bytes arrive.
    Client(usize),
    /// Up to this many of the server's bytes arrive.
    Server(usize),
    /// Time passes (milliseconds).
    Tick(u64),
    ServerLost,
    ClientGone,
    Drain,
    Kill,
}

/// A session under test, its servers and what the client saw.
pub struct Session {
    pub rig: Rig,
    live: Option<Model>,
    /// Idle servers per node, with their model backends.
    pools: Vec<Vec<(ServerState, Model)>>,
    next_id: u64,
    setup: Setup,
    attach: Vec<Attach>,
    attach_at: usize,
    /// Every client byte to deliver, and how many were.
    client: Vec<u8>,
    fed_client: usize,
    fed_server: usize,
    /// Bytes the client received.
    pub received: Vec<u8>,
    /// The core said Close.
    pub closed: bool,
    /// The client's socket went away (or the client was killed).
    pub gone: bool,
    /// The first broken invariant.
    pub violation: Option<String>,
    /// Print every action and byte moved (`PGSLUICE_FUZZ_TRACE` set), to study a failure.
    trace: bool,
}

impl Session {
    pub fn new(setup: Setup, client: Vec<u8>, attach: Vec<Attach>) -> Session {
        let startup: Vec<(&str, &str)> = setup
            .startup
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let registry = Arc::new(Registry::default());
        let mut rig = rig_limits(setup.limits.clone(), &startup, registry, setup.max_prepared);
        if let Some(r) = &setup.routing {
            rig.core.route = Some(Box::new(route(r)));
        }
        // Calls outside the allowlist are watched (as the product does in transaction
        // and statement mode) in half the pooled sessions.
        if setup.limits.mode != PoolMode::Session && setup.seed & 8 != 0 {
            let allow = Arc::new(crate::router::Allowlist::new(&[]));
            rig.core
                .set_opaque_check(crate::router::Classifier::new(allow));
        }
        Session {
            rig,
            live: None,
            pools: vec![Vec::new(), Vec::new()],
            next_id: 1,
            setup,
            attach,
            attach_at: 0,
            client,
            fed_client: 0,
            fed_server: 0,
            received: Vec::new(),
            closed: false,
            gone: false,
            violation: None,
            trace: std::env::var_os("PGSLUICE_FUZZ_TRACE").is_some(),
        }
    }

    fn fail(&mut self, why: String) {
        if self.violation.is_none() {
            self.violation = Some(why);
        }
    }

    /// Plays one event, then lets the core and the driver settle.
    pub fn event(&mut self, e: Event) {
        if self.closed || self.violation.is_some() {
            return;
        }
        let core = &mut self.rig.core;
        match e {
            Event::Client(n) => {
                if !self.gone && core.wants_client_bytes() && self.fed_client < self.client.len() {
                    let end = self
                        .fed_client
                        .saturating_add(n.max(1))
                        .min(self.client.len());
                    let bytes = self.client.get(self.fed_client..end).unwrap_or_default();
                    core.client_buf().extend_from_slice(bytes);
                    self.fed_client = end;
                    core.client_data(self.rig.now);
                }
            }
            Event::Server(n) => self.deliver_server(n.max(1)),
            Event::Tick(ms) => {
                self.rig.now += Duration::from_millis(ms);
                if core.deadline().is_some_and(|d| d <= self.rig.now) {
                    core.tick(self.rig.now);
                }
            }
            Event::ServerLost => {
                if self.live.is_some() {
                    core.server_lost("fuzz: connection reset", self.rig.now);
                }
            }
            Event::ClientGone => {
                self.gone = true;
                core.client_gone(self.rig.now);
            }
            Event::Drain => core.drain(),
            Event::Kill => {
                self.gone = true;
                core.force_close("57P01", "terminated by the fuzz target", CloseReason::Admin);
            }
        }
        self.settle(false);
    }

    fn deliver_server(&mut self, n: usize) {
        let core = &mut self.rig.core;
        let Some(model) = &mut self.live else { return };
        if model.out.is_empty() || !core.wants_server_bytes() {
            return;
        }
        let take = n.min(model.out.len());
        let bytes: Vec<u8> = model.out.drain(..take).collect();
        self.fed_server += take;
        match core.server_buf() {
            Some(buf) => buf.extend_from_slice(&bytes),
            None => return self.fail("a live server but no server buffer".into()),
        }
        core.server_data(self.rig.now);
    }

    /// Runs the conversation to its end: every byte delivered, every server answer read,
    /// every checkout served, until nothing moves.
    pub fn finish(&mut self) {
        for _ in 0..100_000 {
            if self.closed || self.violation.is_some() {
                return;
            }
            let before = (self.fed_client, self.fed_server, self.received.len());
            self.settle(true);
            self.deliver_server(usize::MAX);
            self.event(Event::Client(usize::MAX));
            if before == (self.fed_client, self.fed_server, self.received.len()) {
                if self.kick() {
                    return self.fail("stalled: client input left unread".into());
                }
                return;
            }
        }
        self.fail("the conversation never settles".into());
    }

    /// Handles actions and moves queued bytes until the core has nothing to say.
    fn settle(&mut self, always_attach: bool) {
        for _ in 0..1000 {
            let mut moved = false;
            while let Some(a) = self.rig.core.next_action(self.rig.now) {
                moved = true;
                self.action(a, always_attach);
                if self.closed || self.violation.is_some() {
                    return;
                }
            }
            self.check_bounds();
            let core = &mut self.rig.core;
            if core.client_left() {
                core.cout.clear();
            } else if !core.cout.is_empty() {
                let b = core.cout.take_all();
                if self.trace {
                    eprintln!("to client {:?}", String::from_utf8_lossy(&b));
                }
                self.received.extend(b);
                moved = true;
            }
            if !core.sout.is_empty() {
                match &mut self.live {
                    Some(model) => {
                        let b = core.sout.take_all();
                        if self.trace {
                            eprintln!("to server {:?}", String::from_utf8_lossy(&b));
                        }
                        model.feed(&b)
                    }
                    None => return self.fail("bytes for the server while none is held".into()),
                }
                moved = true;
            }
            if self
                .live
                .as_ref()
                .is_some_and(|m| m.closed && m.out.is_empty())
            {
                core.server_lost("fuzz: server closed the connection", self.rig.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        self.fail("the core keeps acting without input".into());
    }

    fn action(&mut self, a: Action, always_attach: bool) {
        if self.trace {
            eprintln!("action {a:?}");
        }
        match a {
            Action::NeedServer { node } => self.need_server(node, always_attach),
            Action::Release(server, how) => {
                // As the driver does: the state goes back into its connection's place,
                // where the attach left a placeholder.
                let mut state = ServerState::lent(server.state().id);
                self.rig.core.restore(server, &mut state);
                self.release(state, how)
            }
            Action::Close { .. } => {
                // The driver's farewell: what is queued for the client goes out.
                self.closed = true;
                if !self.rig.core.client_left() {
                    self.received.extend(self.rig.core.cout.take_all());
                }
                if self.rig.core.has_server() {
                    self.fail("the session closed while holding a server".into());
                }
            }
            // The fuzz setups set no query_timeout.
            Action::Cancel => self.fail("a cancel without query_timeout".into()),
            // pgsluice's listener answers at once; with errors injected, it refuses.
            Action::Listen(_) if self.setup.limits.listen_here => {
                let result = if self.setup.error_rate > 0 && self.setup.seed % 2 == 1 {
                    Err("fuzz: the listener refuses".to_string())
                } else {
                    Ok(())
                };
                let now = self.rig.now;
                self.rig.core.listen_done(result, now);
            }
            Action::Listen(_) => self.fail("a LISTEN handed over with listen_here off".into()),
        }
    }

    fn need_server(&mut self, node: usize, always_attach: bool) {
        if self.rig.core.has_server() || self.live.is_some() {
            return self.fail("a server asked for while one is held".into());
        }
        let choice = self
            .attach
            .get(self.attach_at % self.attach.len().max(1))
            .copied()
            .unwrap_or(Attach::Reuse);
        self.attach_at += 1;
        let now = self.rig.now;
        let core = &mut self.rig.core;
        match choice {
            Attach::Unreachable if !always_attach => {
                let err = AttachError::Unreachable("08006".into(), "fuzz: unreachable".into());
                return core.attach_failed(node, err, now);
            }
            Attach::Timeout if !always_attach => {
                let err = AttachError::Other("57014".into(), "fuzz: pool timeout".into());
                return core.attach_failed(node, err, now);
            }
            _ => {}
        }
        let pooled = match choice {
            Attach::Fresh => None,
            _ => self.pools.get_mut(node).and_then(Vec::pop),
        };
        let (state, model) = pooled.unwrap_or_else(|| {
            let id = self.next_id;
            self.next_id += 1;
            let seed = self.setup.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let model = Model::new(id, node, seed, self.setup.error_rate);
            (ServerState::new(id), model)
        });
        self.live = Some(model);
        let mut slot = state;
        self.rig.core.attach_from(&mut slot, node, link(), now);
        if slot.is_quiet() {
            self.fail("the attach left a quiet state in the connection's place".into());
        }
    }

    fn release(&mut self, state: ServerState, how: Release) {
        let Some(model) = self.live.take() else {
            return self.fail("a release without a server".into());
        };
        if state.id != model.id {
            return self.fail(format!(
                "released server {} but {} was held",
                state.id, model.id
            ));
        }
        if how != Release::Clean {
            return;
        }
        // Clean means: at a transaction boundary, nothing in flight either way.
        let core_clean =
            state.status == b'I' && state.buf.is_empty() && self.rig.core.sout.is_empty();
        if !core_clean || !model.idle() {
            return self.fail(format!(
                "server released clean mid-transaction: its status {:?}, {} unread bytes, \
                 {} bytes queued for it; the backend: {model:?}",
                state.status as char,
                state.buf.len(),
                self.rig.core.sout.len()
            ));
        }
        // With statement mapping, pgsluice's record of the server's statements is what
        // the next client relies on: a statement it thinks is there and is not fails that
        // client's Bind; one there it does not know of fails its next Parse (42P05).
        if self.setup.limits.rewrite {
            let mut held = model.statement_ids();
            held.sort_unstable();
            let mut recorded: Vec<u64> = state.statements.ids().collect();
            recorded.sort_unstable();
            if recorded != held {
                return self.fail(format!(
                    "pgsluice's record of server {} disagrees with the server: it records \
                     {recorded:?}, the server holds {held:?}",
                    model.id
                ));
            }
        }
        // The client's SQL-level statements prepared under its own names for server-side
        // code (`own_names.rs`) never go on to the next client. A client name in
        // pgsluice's own name space is never prepared under that name (`own_names.rs`
        // leaves it out): a statement the server holds under it is pgsluice's, whose
        // record the check above has compared already.
        if self.setup.limits.rewrite {
            let left: Vec<&String> = self
                .rig
                .core
                .map
                .names
                .sql
                .keys()
                .filter(|n| !n.starts_with(crate::prepare::SERVER_PREFIX))
                .filter(|n| model.holds_statement(n))
                .collect();
            if !left.is_empty() {
                return self.fail(format!(
                    "server {} released clean holding the client's statements {left:?} \
                     under their own names",
                    model.id
                ));
            }
        }
        if let Some(pool) = self.pools.get_mut(model.node) {
            pool.push((state, model));
        }
    }
}

pub(super) fn route(r: &Routing) -> super::Route {
    let db = crate::router::route::tests::db_with_ready_replica(1000);
    let mut policy = (**db.policy.load()).clone();
    policy.read_your_writes = if r.ryw {
        ReadYourWrites::Lsn
    } else {
        ReadYourWrites::Off
    };
    policy.report_write_lsn = r.report_lsn;
    policy.retry_read_only_errors = r.retry;
    if r.never_primary {
        policy.primary_reads = PrimaryReads::Never;
    }
    db.policy.store(Arc::new(policy));
    let allow = Arc::new(crate::router::Allowlist::new(&[]));
    super::Route::new(
        db,
        crate::router::Classifier::new(allow),
        crate::router::route::Force::Auto,
    )
}

#[path = "fuzz_checks.rs"]
mod checks;
