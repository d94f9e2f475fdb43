//! What the admin console reads from or does to a pool beyond checkout and checkin: the
//! idle server connections, and closing them (PAUSE, KILL).

use std::net::SocketAddr;
use std::time::Instant;

use super::Pool;
use crate::server::{CloseReason, ServerConn};

/// An idle server connection, as SHOW SERVERS lists it.
#[derive(Clone, Debug)]
pub struct IdleServer {
    pub id: u64,
    pub backend_pid: u32,
    pub addr: SocketAddr,
    pub local_addr: Option<SocketAddr>,
    pub created: Instant,
    pub last_used: Instant,
    /// Statements pgsluice prepared on it.
    pub prepared: usize,
}

impl Pool {
    /// The idle connections, under the pool's lock (a short copy).
    pub fn idle_servers(&self) -> Vec<IdleServer> {
        self.lock()
            .idle
            .iter()
            .map(|c| IdleServer {
                id: c.state.id,
                backend_pid: c.backend_pid,
                addr: c.addr,
                local_addr: c.stream.local_addr().ok(),
                created: c.created,
                last_used: c.last_used,
                prepared: c.state.statements.len(),
            })
            .collect()
    }

    /// Closes every idle connection (connections in use are untouched); returns how many.
    pub fn close_idle(&self) -> usize {
        let stale: Vec<Box<ServerConn>> = {
            let mut g = self.lock();
            let stale: Vec<Box<ServerConn>> = g.idle.drain(..).collect();
            self.shrink(&mut g, stale.len());
            stale
        };
        let n = stale.len();
        for conn in stale {
            tracing::debug!(pool = ?self.key, server = conn.state.id, reason = ?CloseReason::Admin, "closing server connection");
            self.stats
                .closes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            conn.close();
        }
        n
    }

    /// Closes the least recently used idle connection, if any (to make room under a
    /// database or user limit for another pool). True when one was closed.
    pub fn close_one_idle(&self) -> bool {
        let conn = {
            let mut g = self.lock();
            let Some(conn) = g.idle.pop_front() else {
                return false;
            };
            self.shrink(&mut g, 1);
            conn
        };
        tracing::debug!(pool = ?self.key, server = conn.state.id, "closing an idle server connection to make room under max_db_connections / max_user_connections");
        self.stats
            .closes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        conn.close();
        true
    }
}
