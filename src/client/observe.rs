//! What a session tells the admin console and the metrics: its entry in the client list
//! (state, server, pins, counts), its statistics, PAUSE holds and the slow query log.
//! The relay and the session loop call these small hooks; the work is in
//! [`crate::metrics::Tally`] and [`crate::admin`].

use std::sync::Arc;
use std::time::Duration;

use super::session::Session;
use crate::config::{self, Config};
use crate::metrics::Tally;
use crate::metrics::slowlog::SlowQuery;
use crate::pool::Pool;
use crate::protocol::{self, fe};
use crate::registry::clients::{ClientInfo, ClientMeta, ClientState, ServerLink, pin_mask};
use crate::server::ServerConn;
use crate::shared::Shared;

/// Registers a new session's client and sets up its statistics.
pub(super) fn register(
    shared: &Shared,
    pool: &Pool,
    config: &Config,
    id: u32,
    meta: ClientMeta,
) -> (Arc<ClientInfo>, Tally) {
    let key = &pool.key;
    let info = Arc::new(ClientInfo::new(
        id,
        key.user.clone(),
        key.database.clone(),
        Some(key.node),
        meta,
        Some(shared.admin.db(&key.database)),
    ));
    shared.admin.clients.insert(info.clone());
    let tally = Tally::new(
        shared.metrics.pool(key),
        config.metrics.enabled,
        config::secs(config.general.slow_query_threshold),
        shared.metrics.started,
    );
    (info, tally)
}

impl Session {
    /// Before a checkout: the client is waiting; while its database is paused it is
    /// held here (at most `limit`). Returns the wait's start for [`Session::got_server`].
    pub(super) async fn before_checkout(
        &mut self,
        limit: Option<Duration>,
    ) -> Result<u64, (String, String)> {
        let t0 = self.tally.wait_start(&self.info);
        if self.info.held() {
            // Boxed: the hold's state would otherwise enlarge every attach's future, which
            // is copied per transaction.
            Box::pin(super::hold::hold(&self.shared, &self.info, limit)).await?;
        }
        Ok(t0)
    }

    /// The client got `conn` after waiting since `t0`.
    pub(super) fn got_server(&mut self, t0: u64, conn: &ServerConn) {
        self.info.set_server(Some(ServerLink {
            id: conn.id,
            backend_pid: conn.backend_pid,
            addr: conn.addr,
            local_port: conn.local_port,
            created: conn.created,
        }));
        self.tally.attached(t0, &self.info);
    }

    /// The client gave its server back (or lost it).
    pub(super) fn released_server(&mut self) {
        self.info.set_state(ClientState::Idle);
        self.info.set_server(None);
    }

    /// A ReadyForQuery arrived (after `status` and `outstanding` were updated).
    #[inline]
    pub(super) fn observe_ready(&mut self, status: u8) {
        self.info.set_pins(pin_mask(self.state.pins()));
        if let Some(slow) = self.tally.ready(status, self.outstanding, &self.info) {
            self.log_slow(slow.wait, slow.server);
        }
    }

    /// A whole Query, Parse or Bind frame at `at..at + len` of the client buffer goes to
    /// the server: keep its text (or statement name) for the slow query log.
    #[inline]
    pub(super) fn observe_text(&mut self, tag: u8, at: usize, len: usize) {
        let Some(slow) = &mut self.tally.slow else {
            return;
        };
        let body = protocol::body(&self.cin[at..at + len]);
        match tag {
            // The text runs to the NUL that ends the body.
            fe::QUERY => slow.keep_text(&body[..body.len().saturating_sub(1)]),
            fe::PARSE => {
                if let Some((_, rest)) = protocol::cstr(body) {
                    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                    slow.keep_text(&rest[..end]);
                }
            }
            fe::BIND if self.rewrite => {
                let mut parts = body.splitn(3, |&b| b == 0);
                let _portal = parts.next();
                if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
                    slow.keep_bind_name(name);
                }
            }
            _ => {}
        }
    }

    /// The session ends: publish what is left.
    pub(super) fn observe_end(&mut self) {
        self.tally.flush(&self.info);
    }

    fn log_slow(&self, wait: Duration, server: Duration) {
        let Some(slow) = &self.tally.slow else {
            return;
        };
        // A Bind of a mapped statement: the text is the statement's.
        let stmt = std::str::from_utf8(&slow.bind_name)
            .ok()
            .filter(|n| !n.is_empty())
            .and_then(|n| self.ext.stmts.get(n));
        let (text, truncated) = match stmt {
            Some(s) => {
                let q = s.query().as_bytes();
                let cut = q.len().min(crate::metrics::slowlog::MAX_TEXT);
                (&q[..cut], q.len() > cut)
            }
            None => (&slow.text[..], slow.truncated),
        };
        SlowQuery {
            database: &self.pool.key.database,
            user: &self.pool.key.user,
            client: self.id(),
            node: self.pool.key.node,
            wait,
            server,
            text,
            truncated,
        }
        .log();
    }
}
