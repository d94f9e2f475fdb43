//! What pgsluice knows about each node of each database: up or down, primary or replica,
//! how far behind, and whether it may serve reads now. A monitor task per node keeps this
//! current (`monitor.rs`); sessions read it with plain atomic loads when they route a
//! transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::functions::Catalog;
pub(super) use super::monitor::Sample;
pub use super::policy::Policy;
use super::route::ToPrimary;
use crate::config::{self, Config, PrimaryReads};

/// One node's health, as last checked.
#[derive(Debug)]
pub struct NodeHealth {
    /// 0 is the configured primary; replicas follow in config order.
    pub index: usize,
    pub addr: String,
    pub weight: u32,
    checked: AtomicBool,
    pub(super) up: AtomicBool,
    in_recovery: AtomicBool,
    /// In the read set now.
    pub(super) readable: AtomicBool,
    /// Replay LSN of a replica, insert LSN of a primary (a replica's is raised between
    /// checks by the probes of sessions).
    pub(super) lsn: AtomicU64,
    /// Replay LSN of a replica, flush LSN of a primary (lag is measured against it: the
    /// insert position can sit past a page header no replica will replay until more WAL
    /// comes).
    flushed: AtomicU64,
    lag_bytes: AtomicU64,
    pub(super) lag_ms: AtomicU64,
    /// Out of the read set because of lag (not because it is down).
    pub(super) lagging: AtomicBool,
    streak: AtomicU32,
    why: Mutex<String>,
    /// Clients using a connection to this node now.
    pub active: AtomicUsize,
    /// Transactions routed here as reads.
    pub reads: AtomicU64,
    /// Transactions routed here as writes.
    pub writes: AtomicU64,
    /// Statements this node refused as read-only (25006) that were retried on the primary.
    pub retries: AtomicU64,
    /// Read-your-writes probes of this replica, and those that found it behind.
    pub probes: AtomicU64,
    pub probe_misses: AtomicU64,
    /// Units this node served as the primary, by why they went there ([`ToPrimary`]).
    pub to_primary: [AtomicU64; ToPrimary::COUNT],
}

/// A point-in-time view of one node, for the admin console and metrics.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub index: usize,
    pub addr: String,
    pub role: &'static str,
    /// The monitor has checked it at least once (until then `up` is an assumption).
    pub checked: bool,
    pub up: bool,
    pub in_read_set: bool,
    pub why_not: String,
    pub lsn: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub active: usize,
    pub reads: u64,
    pub writes: u64,
    pub retries: u64,
    pub probes: u64,
    pub probe_misses: u64,
    pub to_primary: [u64; ToPrimary::COUNT],
}

/// The nodes of one database.
#[derive(Debug)]
pub struct DbNodes {
    pub database: String,
    pub nodes: Vec<NodeHealth>,
    /// The node that takes writes now (follows a promotion).
    writer: AtomicUsize,
    pub policy: ArcSwap<Policy>,
    /// Reads sent to the primary because no replica had replayed the session's writes.
    pub ryw_fallbacks: AtomicU64,
    /// Reads sent to the primary because no replica was usable at all.
    pub read_fallbacks: AtomicU64,
    pub(super) spawned: AtomicBool,
    /// Every function's volatility, as the primary's catalog last said.
    pub functions: ArcSwap<Catalog>,
    /// The catalog is to be read again soon (RELOAD, or a session met an unknown name).
    pub(super) functions_wanted: AtomicBool,
}

/// Why no node may serve a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoReader;

impl DbNodes {
    fn new(database: &str, db: &config::Database, policy: Policy) -> DbNodes {
        let mut addrs = vec![(db.primary.clone(), db.primary_weight.max(1))];
        addrs.extend(
            db.replicas
                .iter()
                .map(|r| (r.addr().to_string(), r.weight())),
        );
        let nodes = addrs
            .into_iter()
            .enumerate()
            .map(|(index, (addr, weight))| NodeHealth {
                index,
                addr,
                weight,
                checked: AtomicBool::new(false),
                up: AtomicBool::new(true),
                in_recovery: AtomicBool::new(index != 0),
                readable: AtomicBool::new(false),
                lsn: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                lag_bytes: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                lagging: AtomicBool::new(false),
                streak: AtomicU32::new(0),
                why: Mutex::new("not checked yet".into()),
                active: AtomicUsize::new(0),
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                probes: AtomicU64::new(0),
                probe_misses: AtomicU64::new(0),
                to_primary: Default::default(),
            })
            .collect();
        DbNodes {
            database: database.to_string(),
            nodes,
            writer: AtomicUsize::new(0),
            policy: ArcSwap::from_pointee(policy),
            ryw_fallbacks: AtomicU64::new(0),
            read_fallbacks: AtomicU64::new(0),
            spawned: AtomicBool::new(false),
            functions: ArcSwap::default(),
            functions_wanted: AtomicBool::new(false),
        }
    }

    fn same_nodes(&self, db: &config::Database) -> bool {
        self.nodes.len() == db.replicas.len() + 1
            && self.nodes[0].addr == db.primary
            && self.nodes[0].weight == db.primary_weight.max(1)
            && self.nodes[1..]
                .iter()
                .zip(&db.replicas)
                .all(|(n, r)| n.addr == r.addr() && n.weight == r.weight())
    }

    /// Whether the database has nodes besides the primary.
    pub fn has_replicas(&self) -> bool {
        self.nodes.len() > 1
    }

    /// The node that takes writes.
    pub fn writer(&self) -> usize {
        self.writer.load(Relaxed)
    }

    /// Every node's state, for the admin console and metrics.
    pub fn status(&self) -> Vec<NodeStatus> {
        let writer = self.writer();
        self.nodes
            .iter()
            .map(|n| {
                let in_recovery = n.in_recovery.load(Relaxed);
                let role = if n.index == writer {
                    "primary"
                } else if in_recovery {
                    "replica"
                } else {
                    "standalone"
                };
                NodeStatus {
                    index: n.index,
                    addr: n.addr.clone(),
                    role,
                    checked: n.checked.load(Relaxed),
                    up: n.up.load(Relaxed),
                    in_read_set: if n.index == writer {
                        self.policy.load().primary_reads == PrimaryReads::Always
                    } else {
                        n.readable.load(Relaxed)
                    },
                    why_not: n.why.lock().map(|w| w.clone()).unwrap_or_default(),
                    lsn: n.lsn.load(Relaxed),
                    lag_bytes: n.lag_bytes.load(Relaxed),
                    lag_seconds: n.lag_ms.load(Relaxed) as f64 / 1000.0,
                    active: n.active.load(Relaxed),
                    reads: n.reads.load(Relaxed),
                    writes: n.writes.load(Relaxed),
                    retries: n.retries.load(Relaxed),
                    probes: n.probes.load(Relaxed),
                    probe_misses: n.probe_misses.load(Relaxed),
                    to_primary: std::array::from_fn(|k| n.to_primary[k].load(Relaxed)),
                }
            })
            .collect()
    }

    fn set_why(&self, i: usize, why: &str) {
        if let Ok(mut w) = self.nodes[i].why.lock()
            && *w != why
        {
            if !why.is_empty() {
                tracing::info!(
                    database = self.database,
                    node = self.nodes[i].addr,
                    "node left the read set: {why}"
                );
            } else if i == self.writer() {
                // As SHOW NODES: the primary is in the read set only with
                // primary_reads = "always".
                let reads = if self.policy.load().primary_reads == PrimaryReads::Always {
                    "and in the read set (primary_reads = \"always\")"
                } else {
                    "not in the read set (it serves reads only when no replica can)"
                };
                tracing::info!(
                    database = self.database,
                    node = self.nodes[i].addr,
                    "node is the primary, {reads}"
                );
            } else {
                tracing::info!(
                    database = self.database,
                    node = self.nodes[i].addr,
                    "node is in the read set"
                );
            }
            *w = why.to_string();
        }
    }

    /// A session could not reach node `i`: out of the read set until the monitor sees it
    /// answer again.
    pub fn report_unreachable(&self, i: usize, why: &str) {
        if i != self.writer() && i < self.nodes.len() {
            self.mark_down(i, why);
        }
    }

    /// Records a failed check of node `i`.
    pub(super) fn mark_down(&self, i: usize, why: &str) {
        let n = &self.nodes[i];
        n.checked.store(true, Relaxed);
        n.up.store(false, Relaxed);
        n.readable.store(false, Relaxed);
        n.lagging.store(false, Relaxed);
        n.streak.store(0, Relaxed);
        self.set_why(i, &format!("down: {why}"));
        self.elect_writer();
    }

    /// Records a successful check of node `i`.
    pub(super) fn record(&self, i: usize, sample: Sample) {
        let n = &self.nodes[i];
        let first = !n.checked.swap(true, Relaxed);
        n.up.store(true, Relaxed);
        n.in_recovery.store(sample.in_recovery, Relaxed);
        n.lsn.store(sample.lsn, Relaxed);
        n.flushed.store(sample.flushed, Relaxed);
        self.elect_writer();
        let writer = self.writer();
        if i == writer {
            n.lag_bytes.store(0, Relaxed);
            n.lag_ms.store(0, Relaxed);
            n.readable.store(false, Relaxed);
            self.set_why(i, "");
            return;
        }
        if !sample.in_recovery {
            n.readable.store(false, Relaxed);
            n.streak.store(0, Relaxed);
            self.set_why(i, "not in recovery, and not the primary in use");
            return;
        }
        let writer_lsn = self.nodes[writer].flushed.load(Relaxed);
        let lag_bytes = writer_lsn.saturating_sub(sample.lsn);
        let lag = if lag_bytes == 0 {
            Duration::ZERO
        } else {
            sample.replay_age
        };
        n.lag_bytes.store(lag_bytes, Relaxed);
        n.lag_ms.store(lag.as_millis() as u64, Relaxed);
        let policy = self.policy.load();
        let why = if policy.max_lag.is_some_and(|m| lag > m) {
            format!("lag {:.1}s over max_replica_lag", lag.as_secs_f64())
        } else if policy.max_lag_bytes > 0 && lag_bytes > policy.max_lag_bytes {
            format!("lag {lag_bytes} bytes over max_replica_lag_bytes")
        } else {
            String::new()
        };
        n.lagging.store(!why.is_empty(), Relaxed);
        if !why.is_empty() {
            n.streak.store(0, Relaxed);
            n.readable.store(false, Relaxed);
            self.set_why(i, &why);
            return;
        }
        let streak = n.streak.fetch_add(1, Relaxed) + 1;
        if first || n.readable.load(Relaxed) || streak >= policy.rejoin_after {
            n.readable.store(true, Relaxed);
            self.set_why(i, "");
        } else {
            self.set_why(
                i,
                &format!("rejoining: {streak} of {} good checks", policy.rejoin_after),
            );
        }
    }

    /// A session saw replica `i` at replay position `lsn` (a read-your-writes probe): a
    /// fresher sample than the monitor's, good for every session until the next check.
    /// Replay positions only grow, so the larger value is kept.
    pub fn saw_replay(&self, i: usize, lsn: u64) {
        if let Some(n) = self.nodes.get(i)
            && i != self.writer()
        {
            n.lsn.fetch_max(lsn, Relaxed);
        }
    }

    /// Counts a unit node `node` served as the primary, and why it went there.
    pub fn count_to_primary(&self, node: usize, why: ToPrimary) {
        if let Some(n) = self.nodes.get(node) {
            n.to_primary[why as usize].fetch_add(1, Relaxed);
        }
    }

    /// Asks the monitor to read the function catalog again soon.
    pub fn want_functions(&self) {
        self.functions_wanted.store(true, Relaxed);
    }

    /// Keeps the writer while it is up and not in recovery; otherwise takes the first node
    /// that is (after a failover, the promoted replica).
    fn elect_writer(&self) {
        let current = self.writer();
        let fit = |n: &NodeHealth| {
            n.checked.load(Relaxed) && n.up.load(Relaxed) && !n.in_recovery.load(Relaxed)
        };
        if fit(&self.nodes[current]) {
            return;
        }
        if let Some(n) = self.nodes.iter().find(|n| fit(n)) {
            tracing::warn!(
                database = self.database,
                from = self.nodes[current].addr,
                to = n.addr,
                "primary changed: writes now go to {}",
                n.addr
            );
            self.writer.store(n.index, Relaxed);
        }
    }
}

/// Every database's nodes.
#[derive(Default)]
pub struct Nodes {
    map: Mutex<HashMap<String, Arc<DbNodes>>>,
}

impl Nodes {
    /// The nodes of `database`, created if the config has it. A read-only endpoint
    /// (`replicas_of`) shares the nodes of its database.
    pub fn get(&self, config: &Config, database: &str) -> Option<Arc<DbNodes>> {
        let db = config.databases.get(database)?;
        let (name, db) = match &db.replicas_of {
            Some(target) => (target.as_str(), config.databases.get(target)?),
            None => (database, db),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = map.get(name) {
            return Some(d.clone());
        }
        let d = Arc::new(DbNodes::new(name, db, Policy::from_config(config)));
        map.insert(name.to_string(), d.clone());
        Some(d)
    }

    /// Asks every database's monitor to read the function catalog again soon (RELOAD).
    pub fn reread_functions(&self) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for d in map.values() {
            d.want_functions();
        }
    }

    /// Every database's nodes, sorted by name.
    pub fn all(&self) -> Vec<Arc<DbNodes>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.database.cmp(&b.database));
        v
    }

    /// Applies the running config: new policy everywhere; databases whose nodes changed
    /// start over; removed databases are dropped (their monitors stop). The monitor's
    /// supervisor calls this every second, so it must not ask for anything costly: the
    /// function catalog is read again on RELOAD by [`Nodes::reread_functions`].
    pub fn sync(&self, config: &Config) {
        let policy = Policy::from_config(config);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let own = |name: &String| {
            config
                .databases
                .get(name)
                .filter(|db| db.replicas_of.is_none())
        };
        map.retain(|name, d| own(name).is_some_and(|db| d.same_nodes(db)));
        for (name, db) in &config.databases {
            if db.replicas_of.is_some() {
                continue;
            }
            match map.get(name) {
                Some(d) => d.policy.store(Arc::new(policy.clone())),
                None => {
                    map.insert(
                        name.clone(),
                        Arc::new(DbNodes::new(name, db, policy.clone())),
                    );
                }
            }
        }
    }
}
