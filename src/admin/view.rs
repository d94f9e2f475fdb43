//! One consistent-enough look at every pool: its clients by state, its servers by state,
//! the longest wait and its statistics. Read by SHOW POOLS and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::PoolMetrics;
use crate::pool::{Pool, PoolKey};
use crate::registry::clients::{ClientInfo, ClientState};
use crate::shared::Shared;

/// A pool as the console and `/metrics` show it.
pub struct PoolView {
    pub key: PoolKey,
    /// `None` when the pool is gone (removed by a reload) but clients still hold it.
    pub pool: Option<Arc<Pool>>,
    pub metrics: Arc<PoolMetrics>,
    pub clients: Vec<Arc<ClientInfo>>,
    /// Clients holding a server.
    pub cl_active: usize,
    /// Clients logged in with no server and not waiting.
    pub cl_idle: usize,
    /// Clients waiting for a server (pool full, connecting, or held by PAUSE).
    pub cl_waiting: usize,
    /// Server connections held by clients.
    pub sv_active: usize,
    pub sv_idle: usize,
    /// Server connections being opened, or handed over to a client that has not
    /// started using it yet.
    pub sv_login: usize,
    pub size: usize,
    /// The reserve pool's size, and its connections open now.
    pub reserve: usize,
    pub reserve_used: usize,
    /// The longest current wait, in microseconds.
    pub maxwait_us: u64,
}

/// Microseconds since pgsluice started, on the clock [`ClientInfo`] times use.
pub fn now_us(shared: &Shared) -> u64 {
    Instant::now()
        .saturating_duration_since(shared.metrics.started)
        .as_micros() as u64
}

/// Every pool with its clients, sorted by key.
pub fn pools(shared: &Shared) -> Vec<PoolView> {
    let now = now_us(shared);
    let mut by_key: BTreeMap<PoolKey, Vec<Arc<ClientInfo>>> = BTreeMap::new();
    for c in shared.admin.clients.all() {
        if let Some(k) = c.pool_key() {
            by_key.entry(k).or_default().push(c);
        }
    }
    let mut pools: BTreeMap<PoolKey, Option<Arc<Pool>>> = shared
        .pools
        .all()
        .into_iter()
        .map(|p| (p.key.clone(), Some(p)))
        .collect();
    for k in by_key.keys() {
        // A pool removed by a reload while clients still use its connections.
        pools.entry(k.clone()).or_insert(None);
    }
    pools
        .into_iter()
        .map(|(key, pool)| {
            let clients = by_key.remove(&key).unwrap_or_default();
            let mut v = PoolView {
                metrics: shared.metrics.pool(&key),
                pool,
                key,
                clients: Vec::new(),
                cl_active: 0,
                cl_idle: 0,
                cl_waiting: 0,
                sv_active: 0,
                sv_idle: 0,
                sv_login: 0,
                size: 0,
                reserve: 0,
                reserve_used: 0,
                maxwait_us: 0,
            };
            for c in &clients {
                match c.state() {
                    ClientState::Active => v.cl_active += 1,
                    ClientState::Idle => v.cl_idle += 1,
                    ClientState::Waiting => {
                        v.cl_waiting += 1;
                        let waited = c.since_us().map_or(0, |s| now.saturating_sub(s));
                        v.maxwait_us = v.maxwait_us.max(waited);
                    }
                }
                if c.state() == ClientState::Active && c.server().is_some() {
                    v.sv_active += 1;
                }
            }
            if let Some(p) = &v.pool {
                let s = p.snapshot();
                v.sv_idle = s.idle;
                v.size = s.size;
                v.reserve = s.reserve;
                v.reserve_used = s.reserve_used;
                v.sv_login = s.total.saturating_sub(s.idle + v.sv_active);
            }
            v.clients = clients;
            v
        })
        .collect()
}
