//! The node monitor: one task per node of each database with replicas, asking it every
//! `lag_check_interval` whether it is in recovery and where its WAL stands.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::nodes::{DbNodes, parse_lsn};
use crate::pool::PoolKey;
use crate::server::{self, ServerConn};
use crate::shared::Shared;

/// What one check of a node found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub in_recovery: bool,
    /// Replay LSN of a replica, insert LSN of a primary.
    pub lsn: u64,
    /// Replay LSN of a replica, flush LSN of a primary: what a replica can have replayed.
    pub flushed: u64,
    pub replay_age: Duration,
}

/// Keeps a monitor running for every node of every database; runs until the process ends.
pub async fn supervise(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.nodes.sync(&shared.snapshot.load().config);
        for db in shared.nodes.all() {
            // Without replicas there is nothing to route or fail over to: no monitor, and
            // no connection spent on it.
            if !db.has_replicas() || db.spawned.swap(true, Relaxed) {
                continue;
            }
            for i in 0..db.nodes.len() {
                tokio::spawn(watch_node(Arc::downgrade(&db), i, shared.clone()));
            }
        }
    }
}

/// Checks node `i` of `db` every `lag_check_interval` until the database leaves the
/// config. A node that does not answer is marked down and retried with backoff.
async fn watch_node(db: Weak<DbNodes>, i: usize, shared: Arc<Shared>) {
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut conn: Option<Box<ServerConn>> = None;
    let mut backoff = Duration::ZERO;
    let mut last_error = String::new();
    loop {
        let Some(nodes) = db.upgrade() else {
            return;
        };
        let interval = nodes.policy.load().interval;
        let timeout = (interval * 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let result = check(&shared, &nodes, i, &mut conn, timeout).await;
        let pause = match result {
            Ok(sample) => {
                if !last_error.is_empty() {
                    tracing::info!(
                        database = nodes.database,
                        node = nodes.nodes[i].addr,
                        "node is reachable again"
                    );
                    last_error.clear();
                }
                nodes.record(i, sample);
                backoff = Duration::ZERO;
                interval
            }
            Err(e) => {
                conn = None;
                if e != last_error {
                    tracing::warn!(
                        database = nodes.database,
                        node = nodes.nodes[i].addr,
                        "node check failed: {e}"
                    );
                    last_error = e.clone();
                }
                nodes.mark_down(i, &e);
                backoff = (backoff * 2).clamp(interval, MAX_BACKOFF);
                backoff
            }
        };
        drop(nodes);
        tokio::time::sleep(pause).await;
    }
}

const CHECK_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     COALESCE(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
     ELSE pg_catalog.pg_current_wal_insert_lsn() END, '0/0'::pg_lsn), \
     COALESCE(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
     ELSE pg_catalog.pg_current_wal_flush_lsn() END, '0/0'::pg_lsn), \
     COALESCE(EXTRACT(EPOCH FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()), 0)";

async fn check(
    shared: &Shared,
    nodes: &DbNodes,
    i: usize,
    conn: &mut Option<Box<ServerConn>>,
    timeout: Duration,
) -> Result<Sample, String> {
    if conn.is_none() {
        let config = &shared.snapshot.load().config;
        let user = config
            .monitor_user()
            .ok_or("no user to check nodes as: set routing.monitor_user")?;
        let key = PoolKey {
            database: nodes.database.clone(),
            user: user.to_string(),
            node: i,
        };
        let settings = crate::pool::settings_for(config, &key, &shared.pools.credentials)
            .ok_or("node is not configured")?;
        let c = server::connect(&settings.target, 0, Some(timeout))
            .await
            .map_err(|e| e.to_string())?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let row = tokio::time::timeout(timeout, c.query_row(CHECK_SQL))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.message)?;
    let field = |k: usize| row.get(k).cloned().flatten().unwrap_or_default();
    Ok(Sample {
        in_recovery: field(0) == "t",
        lsn: parse_lsn(&field(1)).ok_or("unreadable LSN")?,
        flushed: parse_lsn(&field(2)).ok_or("unreadable LSN")?,
        replay_age: Duration::from_secs_f64(field(3).parse::<f64>().unwrap_or(0.0).max(0.0)),
    })
}
