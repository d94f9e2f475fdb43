//! The `[admin]` and `[metrics]` sections: the HTTP endpoints and the statistics that the
//! admin console and `/metrics` report.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[admin]`: the HTTP listener for `/metrics`, `/healthz` and `/readyz`. The admin
/// console itself answers on `general.listen_addr` (databases `pgsluice` and `pgbouncer`);
/// who may use it is set in `[auth]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// `host:port` for the HTTP endpoints; empty (the default) turns them off. Off by
    /// default because two poolers on one host (or parallel tests) would fight over a
    /// fixed port; containers set it, e.g. "0.0.0.0:9930". Read at start only.
    pub http_listen_addr: String,
}

/// `[metrics]`: per-pool counters and latency histograms.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Count queries, transactions, bytes and errors, and time queries, transactions and
    /// pool waits. Off, SHOW STATS / SHOW LATENCY and the `/metrics` counters stay at zero
    /// (connection counts are still reported). Applies to clients that log in afterwards.
    pub enabled: bool,
    /// Seconds between the snapshots that SHOW STATS averages and SHOW LATENCY
    /// percentiles are computed over (as PgBouncer's `stats_period`).
    pub stats_period: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            stats_period: 60.0,
        }
    }
}

impl Admin {
    /// The HTTP listen address, `None` when off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listen_addr.parse().ok()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.http_listen_addr.is_empty() {
            self.http_listen_addr
                .parse::<SocketAddr>()
                .map_err(|e| invalid("admin.http_listen_addr", e.to_string()))?;
        }
        Ok(())
    }
}

impl Metrics {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1.0..=86_400.0).contains(&self.stats_period) {
            return Err(invalid(
                "metrics.stats_period",
                "must be between 1 and 86400 seconds",
            ));
        }
        Ok(())
    }
}
