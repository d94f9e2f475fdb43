//! Choosing the node for a read: among the replicas that qualify, by `load_balance`; with
//! read-your-writes, a replica known (or probed) to have replayed the session's writes;
//! the primary when no replica can, with the reason why.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::nodes::{DbNodes, NoReader, NodeHealth};
use super::route::ToPrimary;
use crate::config::{LoadBalance, PrimaryReads};

/// How far behind (its last sampled replay delay) a replica may be and still be worth a
/// read-your-writes probe, beyond `ryw_max_wait`.
pub const PROBE_SLACK: Duration = Duration::from_millis(10);

/// Where a read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// A reader: a replica (or the primary with `primary_reads = "always"`).
    Reader(usize),
    /// A replica that keeps up but whose last sample is older than `min_lsn`: the
    /// session asks it on the checked-out connection before reading there.
    Probe(usize),
    /// The primary, and why.
    Primary(usize, ToPrimary),
}

thread_local! {
    static TURN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl DbNodes {
    /// A node to serve a read that must see WAL up to `min_lsn` (0: anything).
    ///
    /// Replicas in the read set that have replayed `min_lsn` qualify, and the primary too
    /// when `primary_reads = "always"`. When none does, the primary serves the read unless
    /// `primary_reads = "never"` and the session has no write of its own to see.
    pub fn reader(&self, min_lsn: u64) -> Result<usize, NoReader> {
        match self.pick_reader(min_lsn, None, false)? {
            Pick::Reader(n) | Pick::Probe(n) | Pick::Primary(n, _) => Ok(n),
        }
    }

    /// The node for a read that must see `min_lsn`, not choosing replica `avoid` (it just
    /// failed). With `probe`, a replica that keeps up may be chosen to be asked.
    pub fn pick_reader(
        &self,
        min_lsn: u64,
        avoid: Option<usize>,
        probe: bool,
    ) -> Result<Pick, NoReader> {
        let policy = self.policy.load();
        let writer = self.writer();
        let usable = |n: &NodeHealth| {
            n.index != writer && Some(n.index) != avoid && n.readable.load(Relaxed)
        };
        let confirmed = |n: &NodeHealth| {
            if n.index == writer {
                policy.primary_reads == PrimaryReads::Always
            } else {
                usable(n) && n.lsn.load(Relaxed) >= min_lsn
            }
        };
        if let Some(n) = self.balance(policy.load_balance, confirmed) {
            return Ok(Pick::Reader(n));
        }
        if min_lsn > 0 && probe && policy.ryw_probe {
            let keeps_up = (policy.ryw_max_wait + PROBE_SLACK).as_millis() as u64;
            let candidate = |n: &NodeHealth| usable(n) && n.lag_ms.load(Relaxed) <= keeps_up;
            if let Some(n) = self.balance(policy.load_balance, candidate) {
                return Ok(Pick::Probe(n));
            }
        }
        let why = if self.nodes.iter().any(usable) || self.any_lagging(writer, avoid) {
            ToPrimary::Lag
        } else {
            ToPrimary::NoReplica
        };
        if min_lsn == 0 && policy.primary_reads == PrimaryReads::Never {
            return Err(NoReader);
        }
        if min_lsn > 0 {
            self.ryw_fallbacks.fetch_add(1, Relaxed);
        } else {
            self.read_fallbacks.fetch_add(1, Relaxed);
        }
        Ok(Pick::Primary(writer, why))
    }

    /// Whether a replica is out of the read set for lag alone (up, but behind).
    fn any_lagging(&self, writer: usize, avoid: Option<usize>) -> bool {
        self.nodes.iter().any(|n| {
            n.index != writer
                && Some(n.index) != avoid
                && n.up.load(Relaxed)
                && n.lagging.load(Relaxed)
        })
    }

    /// One of the nodes `eligible` admits, by the load-balancing policy and weights.
    fn balance(&self, lb: LoadBalance, eligible: impl Fn(&NodeHealth) -> bool) -> Option<usize> {
        let total: u64 = self
            .nodes
            .iter()
            .filter(|n| eligible(n))
            .map(|n| u64::from(n.weight))
            .sum();
        if total == 0 {
            return None;
        }
        match lb {
            LoadBalance::LeastOutstanding => self
                .nodes
                .iter()
                .filter(|n| eligible(n))
                .min_by_key(|n| {
                    // active / weight, compared without division.
                    (n.active.load(Relaxed) as u64 * 1000) / u64::from(n.weight)
                })
                .map(|n| n.index),
            lb => {
                let mut ticket = if lb == LoadBalance::Random {
                    rand::random::<u64>() % total
                } else {
                    TURN.with(|t| {
                        let v = t.get();
                        t.set(v.wrapping_add(1));
                        v % total
                    })
                };
                self.nodes.iter().filter(|n| eligible(n)).find_map(|n| {
                    let w = u64::from(n.weight);
                    if ticket < w {
                        Some(n.index)
                    } else {
                        ticket -= w;
                        None
                    }
                })
            }
        }
    }
}
