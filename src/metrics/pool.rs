//! The statistics of one pool (database, user, node): counters and histograms.
//!
//! # Concurrency note
//! Sessions publish once per transaction (and once per query for the query histogram)
//! into the shard of the worker thread they run on: each worker thread writes only its own
//! shard, padded to its own cache lines, so the atomics are never contended and `Relaxed`
//! is enough (nobody orders other memory by them). Readers (the admin console, `/metrics`,
//! the stats ticker) add the shards up. Error classes are rare and sit under a mutex.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use super::histogram::{BUCKETS, Counts};
use crate::pool::PoolKey;

/// Counter slots of a shard. Queries, transactions and waits are counted by their
/// histograms (one atomic addition fewer each).
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum C {
    /// Bytes read from clients.
    BytesIn,
    /// Bytes read from servers (and sent on to clients).
    BytesOut,
    XactUs,
    QueryUs,
    WaitUs,
}
const NC: usize = 5;

/// One worker's share of a pool's statistics.
#[repr(align(128))]
pub(crate) struct Shard {
    c: [AtomicU64; NC],
    query: [AtomicU64; BUCKETS],
    xact: [AtomicU64; BUCKETS],
    wait: [AtomicU64; BUCKETS],
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            c: std::array::from_fn(|_| AtomicU64::new(0)),
            query: std::array::from_fn(|_| AtomicU64::new(0)),
            xact: std::array::from_fn(|_| AtomicU64::new(0)),
            wait: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Shard {
    #[inline]
    pub(crate) fn add(&self, c: C, n: u64) {
        if n != 0 {
            self.c[c as usize].fetch_add(n, Relaxed);
        }
    }

    #[inline]
    pub(crate) fn observe_query(&self, us: u64) {
        self.query[super::histogram::bucket(us)].fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn observe_xact(&self, us: u64) {
        self.xact[super::histogram::bucket(us)].fetch_add(1, Relaxed);
    }

    #[inline]
    pub(crate) fn observe_wait(&self, us: u64) {
        self.wait[super::histogram::bucket(us)].fetch_add(1, Relaxed);
        self.add(C::WaitUs, us);
    }
}

/// A pool's statistics added up at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub xacts: u64,
    pub queries: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub xact_us: u64,
    pub query_us: u64,
    pub wait_us: u64,
    pub waits: u64,
    pub query: Counts,
    pub xact: Counts,
    pub wait: Counts,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.xacts += o.xacts;
        self.queries += o.queries;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.xact_us += o.xact_us;
        self.query_us += o.query_us;
        self.wait_us += o.wait_us;
        self.waits += o.waits;
        self.query.add(&o.query);
        self.xact.add(&o.xact);
        self.wait.add(&o.wait);
    }

    /// What happened between `older` and `self`.
    pub fn since(&self, older: &Totals) -> Totals {
        Totals {
            xacts: self.xacts.saturating_sub(older.xacts),
            queries: self.queries.saturating_sub(older.queries),
            bytes_in: self.bytes_in.saturating_sub(older.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(older.bytes_out),
            xact_us: self.xact_us.saturating_sub(older.xact_us),
            query_us: self.query_us.saturating_sub(older.query_us),
            wait_us: self.wait_us.saturating_sub(older.wait_us),
            waits: self.waits.saturating_sub(older.waits),
            query: self.query.since(&older.query),
            xact: self.xact.since(&older.xact),
            wait: self.wait.since(&older.wait),
        }
    }
}

/// Snapshots for windowed figures (SHOW STATS averages, SHOW LATENCY), rotated by the
/// stats ticker every `metrics.stats_period`.
struct Window {
    older: Totals,
    older_at: Instant,
    newer: Totals,
    newer_at: Instant,
}

/// Statistics of one pool.
pub struct PoolMetrics {
    pub key: PoolKey,
    /// When statistics started (pgsluice's start): the sessions' tallies count from it.
    pub started: Instant,
    shards: Box<[Shard]>,
    /// Server ErrorResponses by SQLSTATE class (first two characters).
    errors: Mutex<BTreeMap<[u8; 2], u64>>,
    window: Mutex<Window>,
}

impl PoolMetrics {
    pub(crate) fn new(key: PoolKey, shards: usize, now: Instant) -> PoolMetrics {
        PoolMetrics {
            key,
            started: now,
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            errors: Mutex::default(),
            window: Mutex::new(Window {
                older: Totals::default(),
                older_at: now,
                newer: Totals::default(),
                newer_at: now,
            }),
        }
    }

    /// The shard for worker `worker`.
    #[inline]
    pub(crate) fn shard(&self, worker: usize) -> &Shard {
        &self.shards[worker % self.shards.len()]
    }

    pub(crate) fn add_errors(&self, classes: &[[u8; 2]]) {
        let mut map = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        for c in classes {
            *map.entry(*c).or_default() += 1;
        }
    }

    /// Errors by SQLSTATE class.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let map = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), *v))
            .collect()
    }

    /// Every shard added up.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            let c = |i: C| s.c[i as usize].load(Relaxed);
            t.bytes_in += c(C::BytesIn);
            t.bytes_out += c(C::BytesOut);
            t.xact_us += c(C::XactUs);
            t.query_us += c(C::QueryUs);
            t.wait_us += c(C::WaitUs);
            for i in 0..BUCKETS {
                t.query.buckets[i] += s.query[i].load(Relaxed);
                t.xact.buckets[i] += s.xact[i].load(Relaxed);
                t.wait.buckets[i] += s.wait[i].load(Relaxed);
            }
        }
        t.queries = t.query.count();
        t.xacts = t.xact.count();
        t.waits = t.wait.count();
        t.query.sum_us = t.query_us;
        t.xact.sum_us = t.xact_us;
        t.wait.sum_us = t.wait_us;
        t
    }

    /// Activity since the older snapshot, and how long that is: the last one to two
    /// stats periods (less right after start).
    pub fn window(&self, now: Instant) -> (Totals, std::time::Duration) {
        let cur = self.totals();
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        (
            cur.since(&w.older),
            now.saturating_duration_since(w.older_at),
        )
    }

    /// Moves the window on (the stats ticker).
    pub(crate) fn rotate(&self, now: Instant) {
        let cur = self.totals();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.older = std::mem::replace(&mut w.newer, cur);
        w.older_at = std::mem::replace(&mut w.newer_at, now);
    }
}
