//! What a session tells the admin console and the metrics: its entry in the client list
//! (state, server, pins, counts), its statistics and the slow query log. The work is in
//! [`crate::metrics::Tally`] and [`crate::registry::clients`]; this is the core's one
//! owner of both.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Tally;
use crate::metrics::pool::PoolMetrics;
use crate::metrics::slowlog::SlowQuery;
use crate::pool::PoolKey;
use crate::protocol::{self, fe};
use crate::registry::clients::{ClientInfo, ClientState, ServerLink, pin_mask};

use super::state::Pin;
use super::statements::Names;

/// The session's statistics and its entry in the client list.
pub struct Observe {
    pub info: Arc<ClientInfo>,
    pub tally: Tally,
    /// Statistics of each node's pool, fetched on first use (node index → metrics).
    per_node: Vec<Option<Arc<PoolMetrics>>>,
    /// When the current wait for a server started (from [`Tally::wait_start`]).
    wait_t0: u64,
}

/// What a parked session's statistics keep (see `parked.rs`): the per-node cache of pool
/// statistics is fetched again on first use.
pub struct ParkedObserve {
    info: Arc<ClientInfo>,
    tally: crate::metrics::tally::ParkedTally,
}

impl Observe {
    /// Between transactions, with nothing in flight: see [`crate::metrics::Tally::park`].
    pub(super) fn park(self) -> ParkedObserve {
        ParkedObserve {
            tally: self.tally.park(&self.info),
            info: self.info,
        }
    }

    pub(super) fn unpark(p: ParkedObserve) -> Observe {
        Observe::new(p.info, crate::metrics::Tally::unpark(p.tally))
    }

    pub fn new(info: Arc<ClientInfo>, tally: Tally) -> Observe {
        Observe {
            info,
            tally,
            per_node: Vec::new(),
            wait_t0: 0,
        }
    }

    /// The client starts waiting for a server on `node`, whose pool statistics are
    /// `metrics` (fetched by the caller when this node's are not known yet).
    pub fn waiting(&mut self, node: usize, now: Instant) {
        self.info.set_state(ClientState::Waiting);
        self.wait_t0 = self.tally.wait_start(now);
        if self.wait_t0 != 0 {
            self.info.set_since(self.wait_t0);
        }
        if self.info.node() != Some(node) {
            self.info.set_node(node);
        }
    }

    /// Statistics now go to `node`'s pool (the session moved between nodes).
    pub fn switch_node(&mut self, node: usize, metrics: impl FnOnce() -> Arc<PoolMetrics>) {
        if self.per_node.len() <= node {
            self.per_node.resize(node + 1, None);
        }
        let Some(slot) = self.per_node.get_mut(node) else {
            return;
        };
        let m = slot.get_or_insert_with(metrics);
        if !Arc::ptr_eq(m, &self.tally.pool) {
            // What is pending belongs to the previous node.
            let m = m.clone();
            self.tally.flush(&self.info);
            self.tally.pool = m;
        }
    }

    /// The pool key the statistics currently go to.
    pub fn pool_key(&self) -> &PoolKey {
        &self.tally.pool.key
    }

    /// The client got its server.
    pub fn attached(&mut self, link: Arc<ServerLink>, now: Instant) {
        self.info.set_server(link);
        self.tally
            .attached(std::mem::take(&mut self.wait_t0), now, &self.info);
    }

    /// The client gave its server back (or lost it).
    pub fn released(&mut self) {
        self.info.clear_server();
    }

    /// A client frame goes to the server.
    #[inline]
    pub fn client_frame(&mut self, now: Instant) {
        self.tally.client_frame(now, &self.info);
    }

    /// A whole Query, Parse or Bind frame goes to the server: keep its text (or
    /// statement name) for the slow query log.
    #[inline]
    pub fn text(&mut self, tag: u8, frame: &[u8], mapped: bool) {
        let Some(slow) = &mut self.tally.slow else {
            return;
        };
        let body = protocol::body(frame);
        match tag {
            // The text runs to the NUL that ends the body.
            fe::QUERY => {
                slow.keep_text(body.get(..body.len().saturating_sub(1)).unwrap_or_default())
            }
            fe::PARSE => {
                if let Some((_, rest)) = protocol::cstr(body) {
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    slow.keep_text(rest.get(..end).unwrap_or_default());
                }
            }
            fe::BIND if mapped => {
                let mut parts = body.splitn(3, |&b| b == 0);
                let _portal = parts.next();
                if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
                    slow.keep_bind_name(name);
                }
            }
            _ => {}
        }
    }

    /// The server reported an error with this body.
    pub fn error(&mut self, body: &[u8]) {
        self.tally.error(body);
    }

    /// A ReadyForQuery arrived; `outstanding` more are owed.
    #[inline]
    pub fn ready(
        &mut self,
        status: u8,
        outstanding: u32,
        pins: &[Pin],
        names: &Names,
        now: Instant,
    ) {
        self.info.set_pins(pin_mask(pins));
        if let Some(slow) = self.tally.ready(status, outstanding, now, &self.info) {
            self.log_slow(slow.wait, slow.server, names);
        }
    }

    /// The session ends: publish what is left.
    pub fn end(&mut self) {
        self.tally.flush(&self.info);
    }

    fn log_slow(&self, wait: Duration, server: Duration, names: &Names) {
        let Some(slow) = &self.tally.slow else {
            return;
        };
        // A Bind of a mapped statement: the text is the statement's.
        let stmt = std::str::from_utf8(&slow.bind_name)
            .ok()
            .filter(|n| !n.is_empty())
            .and_then(|n| names.stmts.get(n));
        let (text, truncated) = match stmt {
            Some(s) => {
                let q = s.query().as_bytes();
                let cut = q.len().min(crate::metrics::slowlog::MAX_TEXT);
                (q.get(..cut).unwrap_or_default(), q.len() > cut)
            }
            None => (&slow.text[..], slow.truncated),
        };
        let key = &self.tally.pool.key;
        SlowQuery {
            database: &key.database,
            user: &key.user,
            client: self.info.id,
            node: key.node,
            wait,
            server,
            text,
            truncated,
        }
        .log();
    }
}
