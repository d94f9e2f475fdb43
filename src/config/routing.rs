//! `[routing]`: read/write split, load balancing, lag limits and read-your-writes, and
//! their defaults.

use serde::{Deserialize, Serialize};

/// Which node serves a read when several may.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    /// In turn, each node as often as its weight says.
    RoundRobin,
    /// At random, weighted.
    Random,
    /// The node with the fewest clients on it now, relative to its weight.
    LeastOutstanding,
}

/// Whether the primary serves reads too.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReads {
    /// Reads go to replicas only; with none usable, a read fails.
    Never,
    /// Reads go to the primary when no replica is usable.
    Fallback,
    /// The primary is one of the read nodes, by its weight.
    Always,
}

/// Read-your-writes guarantee for sessions that wrote.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWrites {
    /// No guarantee: a read may go to any replica in the read set.
    Off,
    /// After a write, read only from nodes that replayed the session's last commit.
    Lsn,
}

/// `[routing]`: read/write split, load balancing, lag limits and read-your-writes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Send provably read-only statements to replicas (transaction and statement mode).
    pub read_write_split: bool,
    pub load_balance: LoadBalance,
    pub primary_reads: PrimaryReads,
    pub read_your_writes: ReadYourWrites,
    /// Send the client a ParameterStatus `pgsluice.write_lsn` after each committed write.
    pub report_write_lsn: bool,
    /// Seconds between checks of each node.
    pub lag_check_interval: f64,
    /// A replica further behind than this many seconds leaves the read set; 0 = no limit.
    pub max_replica_lag: f64,
    /// A replica further behind than this many bytes of WAL leaves the read set; 0 = no limit.
    pub max_replica_lag_bytes: u64,
    /// Consecutive good checks before a replica that left the read set returns.
    pub rejoin_after_checks: u32,
    /// Functions (besides the built-in allowlist) known not to write, e.g. `"my_report"`
    /// or `"myschema.my_report"`.
    pub read_only_functions: Vec<String>,
    /// Retry on the primary a statement a replica refused with SQLSTATE 25006.
    pub retry_read_only_errors: bool,
    /// Who the node monitor connects as; defaults to the first `[[users]]` entry.
    pub monitor_user: Option<String>,
    /// After a write, ask a replica that keeps up for its replay LSN on the connection
    /// being checked out, instead of sending the session's reads to the primary until
    /// the monitor's next check shows the write replayed.
    pub ryw_probe: bool,
    /// Seconds such a probe may wait, on the replica, for the write to be replayed before
    /// the read goes to the primary; 0 = ask once.
    pub ryw_max_wait: f64,
    /// Look up the volatility of functions not on the allowlist in the catalog:
    /// IMMUTABLE and STABLE ones may run on a replica.
    pub function_volatility: bool,
    /// Seconds between reads of the function catalog (also read on RELOAD, and soon after
    /// a query names a function it does not have).
    pub function_refresh_interval: f64,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            read_write_split: true,
            load_balance: LoadBalance::RoundRobin,
            primary_reads: PrimaryReads::Fallback,
            read_your_writes: ReadYourWrites::Lsn,
            report_write_lsn: false,
            lag_check_interval: 0.1,
            max_replica_lag: 10.0,
            max_replica_lag_bytes: 256 * 1024 * 1024,
            rejoin_after_checks: 3,
            read_only_functions: Vec::new(),
            retry_read_only_errors: true,
            monitor_user: None,
            ryw_probe: true,
            ryw_max_wait: 0.005,
            function_volatility: true,
            function_refresh_interval: 60.0,
        }
    }
}
