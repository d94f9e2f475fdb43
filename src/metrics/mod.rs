//! Statistics for the admin console and Prometheus: per-pool counters and latency
//! histograms ([`pool`]), what a session accumulates and publishes ([`tally`]), the slow
//! query log ([`slowlog`]). The Prometheus text and the HTTP endpoints that serve it are
//! in the `http` module.
//!
//! # Cost on the hot path
//! A session takes at most one clock reading per query boundary (query start, query end,
//! and the start and end of a wait for a server), counts bytes in plain integers, and
//! publishes into its worker's shard of the pool's statistics once per transaction (once
//! per query for the query-time histogram). No global lock and no atomic shared between
//! worker threads is touched per query. `[metrics] enabled = false` skips all of it.

pub mod histogram;
pub mod pool;
pub mod slowlog;
pub mod tally;

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::pool::PoolKey;
pub use pool::{PoolMetrics, Totals};
pub use tally::Tally;

/// Every pool's statistics, by key. The map is locked when a client logs in and when the
/// console or a scrape reads it, never per query.
pub struct Metrics {
    map: Mutex<HashMap<PoolKey, Arc<PoolMetrics>>>,
    /// Shards per pool: one per worker thread.
    shards: usize,
    /// When pgsluice started, as a monotonic and a wall-clock time, to turn `Instant`s
    /// into timestamps.
    pub started: Instant,
    pub started_wall: SystemTime,
    /// Client tasks that ended in a panic (each is logged with its client id; the panic
    /// closed that client and its server connection only).
    pub panics: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            map: Mutex::default(),
            shards: workers.max(1),
            started: Instant::now(),
            started_wall: SystemTime::now(),
            panics: Default::default(),
        }
    }

    /// The statistics of pool `key`, created on first use.
    pub fn pool(&self, key: &PoolKey) -> Arc<PoolMetrics> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(key) {
            return p.clone();
        }
        let p = Arc::new(PoolMetrics::new(key.clone(), self.shards, self.started));
        map.insert(key.clone(), p.clone());
        p
    }

    /// Every pool's statistics, sorted by key.
    pub fn all(&self) -> Vec<Arc<PoolMetrics>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// The wall-clock time of a monotonic instant.
    pub fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.started) {
            Some(d) => self.started_wall + d,
            None => self.started_wall - self.started.duration_since(at),
        }
    }

    /// Moves every pool's statistics window on.
    pub fn rotate(&self) {
        let now = Instant::now();
        for p in self.all() {
            p.rotate(now);
        }
    }
}
