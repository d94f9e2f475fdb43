//! The routing settings sessions and monitors consult, taken from `[routing]` and
//! replaced whole on reload.

use std::time::Duration;

use crate::config::{self, Config, LoadBalance, PrimaryReads, ReadYourWrites};

/// The routing settings sessions consult, replaced on reload.
#[derive(Clone, Debug)]
pub struct Policy {
    pub load_balance: LoadBalance,
    pub primary_reads: PrimaryReads,
    pub read_your_writes: ReadYourWrites,
    pub report_write_lsn: bool,
    pub interval: Duration,
    pub max_lag: Option<Duration>,
    pub max_lag_bytes: u64,
    pub rejoin_after: u32,
    pub retry_read_only_errors: bool,
    /// Ask a replica for its replay LSN on the connection being checked out when the
    /// monitor's last sample is older than the session's write.
    pub ryw_probe: bool,
    /// How long such a probe may wait (on the replica) for the write to be replayed.
    pub ryw_max_wait: Duration,
    /// Look functions up in the catalog (`routing.function_volatility`).
    pub function_volatility: bool,
    /// How often the function catalog is read again.
    pub function_refresh: Duration,
}

impl Policy {
    pub(super) fn from_config(c: &Config) -> Policy {
        let r = &c.routing;
        Policy {
            load_balance: r.load_balance,
            primary_reads: r.primary_reads,
            read_your_writes: r.read_your_writes,
            report_write_lsn: r.report_write_lsn,
            interval: Duration::from_secs_f64(r.lag_check_interval),
            max_lag: config::secs(r.max_replica_lag),
            max_lag_bytes: r.max_replica_lag_bytes,
            rejoin_after: r.rejoin_after_checks.max(1),
            retry_read_only_errors: r.retry_read_only_errors,
            ryw_probe: r.ryw_probe,
            ryw_max_wait: Duration::from_secs_f64(r.ryw_max_wait),
            function_volatility: r.function_volatility,
            function_refresh: Duration::from_secs_f64(r.function_refresh_interval),
        }
    }
}
