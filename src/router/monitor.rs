//! The node monitor: one task per node of each database with replicas, asking it every
//! `lag_check_interval` whether it is in recovery and where its WAL stands.
//!
//! The checks of all nodes fall due together, at the multiples of the interval since one
//! epoch ([`next_check`]), rather than an interval after each node's own last answer
//! (which let them drift apart): the worker that runs the monitor then wakes once for
//! every node's timer and about once for their answers, instead of twice per node. With
//! a primary and two replicas at the default 0.1 s that is 74 wake-ups a second of an
//! idle pgsluice before, about half now.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, LazyLock, Weak};
use std::time::{Duration, Instant};

use super::functions::{CATALOG_SQL, Catalog};
use super::lsn::parse_lsn;
use super::nodes::DbNodes;
use super::nodes::Nodes;
use crate::config::Config;
use crate::pool::PoolKey;
use crate::server::{self, ServerConn};

/// What the monitor needs from the running pooler: the nodes it keeps current and the
/// configuration in force (re-read at every check, so a reload applies).
pub trait Source: Send + Sync + 'static {
    fn nodes(&self) -> &Nodes;
    fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R;
    /// How to connect to the node of `key` (its pool's settings).
    fn pool_settings(&self, config: &Config, key: &PoolKey) -> Option<crate::pool::PoolSettings>;
}

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
pub async fn supervise<S: Source>(shared: Arc<S>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        shared.with_config(|c| shared.nodes().sync(c));
        for db in shared.nodes().all() {
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
async fn watch_node<S: Source>(db: Weak<DbNodes>, i: usize, shared: Arc<S>) {
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut conn: Option<Box<ServerConn>> = None;
    let mut backoff = Duration::ZERO;
    let mut last_error = String::new();
    let mut catalog_tried = None;
    loop {
        let Some(nodes) = db.upgrade() else {
            return;
        };
        let interval = nodes.policy.load().interval;
        let timeout = (interval * 10).clamp(Duration::from_secs(1), Duration::from_secs(5));
        let result = check(&*shared, &nodes, i, &mut conn, timeout).await;
        let until = match result {
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
                if i == nodes.writer()
                    && let Some(c) = conn.as_mut()
                    && let Err(e) = refresh_functions(&nodes, c, &mut catalog_tried, timeout).await
                {
                    tracing::warn!(
                        database = nodes.database,
                        node = nodes.nodes[i].addr,
                        "cannot read the function catalog: {e}"
                    );
                }
                next_check(interval, Instant::now(), *EPOCH)
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
                // An interval above the cap is its own backoff (clamp would panic).
                backoff = backoff
                    .saturating_mul(2)
                    .clamp(interval.min(MAX_BACKOFF), MAX_BACKOFF.max(interval));
                Instant::now() + backoff
            }
        };
        drop(nodes);
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Where the monitor's schedule starts: the checks of every node fall on its multiples of
/// the interval.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When a node that answered is checked next: the first multiple of `interval` since
/// `epoch` after `now` (so at most `interval` away, and the same instant for every node
/// checked within one interval).
fn next_check(interval: Duration, now: Instant, epoch: Instant) -> Instant {
    let step = interval.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let next = (since / step + 1).saturating_mul(step);
    let next = Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX));
    epoch
        .checked_add(next)
        .unwrap_or(now + Duration::from_secs(3600))
}

/// Shortest time between two reads of the function catalog asked for by sessions that
/// met a name it did not have.
const FUNCTIONS_MIN_GAP: Duration = Duration::from_secs(1);

/// Reads the function catalog on the writer's monitor connection when it is due: never
/// tried, tried longer ago than `function_refresh_interval`, or wanted (RELOAD, an
/// unknown name) and tried at least [`FUNCTIONS_MIN_GAP`] ago. `tried` is when this
/// monitor last tried (a failure is not retried at every check).
async fn refresh_functions(
    nodes: &DbNodes,
    conn: &mut ServerConn,
    tried: &mut Option<std::time::Instant>,
    timeout: Duration,
) -> Result<(), String> {
    let policy = nodes.policy.load();
    if !policy.function_volatility {
        return Ok(());
    }
    let wanted = nodes.functions_wanted.load(Relaxed);
    let due = match tried.map(|t| t.elapsed()) {
        None => true,
        Some(age) => age >= policy.function_refresh || (wanted && age >= FUNCTIONS_MIN_GAP),
    };
    if !due {
        return Ok(());
    }
    *tried = Some(std::time::Instant::now());
    nodes.functions_wanted.store(false, Relaxed);
    let rows = tokio::time::timeout(timeout, conn.query_rows(CATALOG_SQL))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.message)?;
    let catalog = Catalog::from_rows(&rows, std::time::Instant::now());
    tracing::debug!(
        database = nodes.database,
        functions = catalog.len(),
        "function catalog read"
    );
    nodes.functions.store(Arc::new(catalog));
    Ok(())
}

/// The replay delay a replica reported, in seconds: negative or unreadable is none, and a
/// value too large for a `Duration` (or infinite) is the longest delay there is.
fn replay_age(text: &str) -> Duration {
    match text.parse::<f64>() {
        Ok(s) if s.is_nan() || s <= 0.0 => Duration::ZERO,
        Ok(s) => Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX),
        Err(_) => Duration::ZERO,
    }
}

const CHECK_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     COALESCE(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
     ELSE pg_catalog.pg_current_wal_insert_lsn() END, '0/0'::pg_lsn), \
     COALESCE(CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
     ELSE pg_catalog.pg_current_wal_flush_lsn() END, '0/0'::pg_lsn), \
     COALESCE(EXTRACT(EPOCH FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()), 0)";

async fn check<S: Source>(
    shared: &S,
    nodes: &DbNodes,
    i: usize,
    conn: &mut Option<Box<ServerConn>>,
    timeout: Duration,
) -> Result<Sample, String> {
    if conn.is_none() {
        let settings = shared.with_config(|config| {
            let user = config
                .monitor_user()
                .ok_or("no user to check nodes as: set routing.monitor_user")?;
            let key = PoolKey {
                database: nodes.database.clone(),
                user: user.to_string(),
                node: i,
            };
            shared
                .pool_settings(config, &key)
                .ok_or("node is not configured")
        })?;
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
        replay_age: replay_age(&field(3)),
    })
}

#[cfg(test)]
mod tests {
    use super::{next_check, replay_age};
    use std::time::{Duration, Instant};

    #[test]
    fn every_node_is_checked_at_the_same_multiples_of_the_interval() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        let interval = ms(100);
        // Nodes whose checks ended at different moments of one interval: the same next.
        let a = next_check(interval, epoch + ms(203), epoch);
        let b = next_check(interval, epoch + ms(277), epoch);
        assert_eq!(a, epoch + ms(300));
        assert_eq!(a, b);
        // On a multiple: the next one, never now.
        assert_eq!(
            next_check(interval, epoch + ms(300), epoch),
            epoch + ms(400)
        );
        // A check that took longer than the interval: the next multiple, sooner.
        assert_eq!(
            next_check(interval, epoch + ms(459), epoch),
            epoch + ms(500)
        );
        // A clock before the epoch, a zero interval, a huge one: no panic, never the past.
        assert_eq!(next_check(interval, epoch, epoch + ms(50)), epoch + ms(150));
        let now = epoch + ms(1);
        assert!(next_check(Duration::ZERO, now, epoch) > now);
        assert!(next_check(Duration::MAX, now, epoch) > now);
    }

    #[test]
    fn replay_age_never_panics() {
        assert_eq!(replay_age("1.5"), Duration::from_millis(1500));
        for v in ["NaN", "-3", "", "x", "-Infinity"] {
            assert_eq!(replay_age(v), Duration::ZERO, "{v}");
        }
        assert_eq!(replay_age("Infinity"), Duration::MAX);
        assert_eq!(replay_age("1e300"), Duration::MAX);
    }
}
