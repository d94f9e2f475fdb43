//! The set of pools, built lazily from the configuration and updated on reload, and the
//! janitor that closes expired idle connections and keeps `min_pool_size` open.

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Pool, PoolKey, PoolSettings, expired};
use crate::auth::passthrough::Credentials;
use crate::config::{self, AuthType, Config};
use crate::server::{ServerConn, ServerTarget};
use crate::tls::{Built, Connector};

/// Every pool, by key.
#[derive(Default)]
pub struct Pools {
    map: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    next_id: Arc<AtomicU64>,
    /// Pass-through credentials learnt from clients' logins, for every pool's connects.
    pub credentials: Arc<Credentials>,
    /// The server-facing TLS connectors of the configuration in force.
    tls: arc_swap::ArcSwap<Built>,
    /// Server connection limits per database and per user, across pools.
    gates: super::limits::GateMap,
    /// Logged-in clients per database and per user.
    pub clients: Arc<super::limits::ClientCounts>,
    /// Pools made for a name only the wildcard database serves.
    wildcard: Mutex<std::collections::HashSet<PoolKey>>,
}

/// Settings for the pool `key` under `config`, or `None` when the config no longer has its
/// database, node or user. A user not in `[[users]]` has a pool when clients need no
/// password (trust) or are looked up with `auth_query`.
pub fn settings_for(
    config: &Config,
    key: &PoolKey,
    credentials: &Arc<Credentials>,
    tls: &Built,
) -> Option<PoolSettings> {
    let db = config.database(&key.database)?;
    let db = db.as_ref();
    let user = config.user(&key.user);
    if user.is_none() && config.auth.auth_type != AuthType::Trust && config.auth.auth_user.is_none()
    {
        return None;
    }
    let addr = match key.node {
        0 => &db.primary,
        n => db.replicas.get(n - 1)?.addr(),
    };
    let (host, port) = config::parse_host_port(addr).ok()?;
    let tls = tls
        .connectors
        .get(&(key.database.clone(), addr.to_string()))
        .cloned()
        .unwrap_or_else(|| Arc::new(Connector::disabled()));
    let password = user.and_then(|u| {
        u.server_password.clone().or_else(|| {
            let p = u.password.as_deref()?;
            crate::auth::Secret::parse(p)
                .ok()?
                .plaintext()
                .map(str::to_string)
        })
    });
    let g = &config.general;
    Some(PoolSettings {
        target: ServerTarget {
            host,
            port,
            database: db.dbname.clone().unwrap_or_else(|| key.database.clone()),
            user: key.user.clone(),
            password,
            tls,
            passthrough: credentials.clone(),
            keepalive: config.keepalive(),
        },
        size: config.pool_size(db, user),
        min_size: db.min_pool_size.unwrap_or(g.min_pool_size),
        connect_timeout: config::secs(g.server_connect_timeout),
        idle_timeout: config::secs(g.server_idle_timeout),
        lifetime: config::secs(g.server_lifetime),
        reserve: config.reserve_pool_size(db, user),
        // 0 turns the reserve pool off, as in PgBouncer.
        reserve_timeout: config::secs(g.reserve_pool_timeout),
        check: config.server_check(),
    })
}

impl Pools {
    /// Pools whose server connections use the TLS connectors in `tls`.
    pub fn new(tls: Arc<Built>) -> Pools {
        Pools {
            tls: arc_swap::ArcSwap::new(tls),
            ..Pools::default()
        }
    }

    /// [`settings_for`] with this set's credentials and TLS connectors.
    pub fn settings(&self, config: &Config, key: &PoolKey) -> Option<PoolSettings> {
        settings_for(config, key, &self.credentials, &self.tls.load())
    }

    /// The pool of `database`, `user` and `node`, created on first use. `None` if the
    /// config has no such pool.
    pub fn get(
        &self,
        config: &Config,
        database: &str,
        user: &str,
        node: usize,
    ) -> Option<Arc<Pool>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&(database, user, node) as &dyn super::key::KeyView) {
            return Some(p.clone());
        }
        let key = PoolKey {
            database: database.to_string(),
            user: user.to_string(),
            node,
        };
        let settings = self.settings(config, &key)?;
        let gates = self.gates_for(config, &key);
        if !config.databases.contains_key(&key.database) {
            self.wildcard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
        }
        let pool = Arc::new(Pool::with_gates(
            key.clone(),
            settings,
            self.next_id.clone(),
            gates,
        ));
        map.insert(key, pool.clone());
        Some(pool)
    }

    /// The gates of `key`'s database and user, with the limits `config` sets.
    fn gates_for(&self, config: &Config, key: &PoolKey) -> super::limits::Gates {
        self.gates.gates(
            &key.database,
            config.max_db_connections(&key.database),
            &key.user,
            config.max_user_connections(&key.user),
        )
    }

    /// Drops the pools of wildcard databases (`[databases."*"]`) that no client uses and
    /// that hold no connection, as PgBouncer drops its auto-created databases.
    fn drop_unused_wildcard_pools(&self) {
        let mut wild = self.wildcard.lock().unwrap_or_else(|e| e.into_inner());
        if wild.is_empty() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|key, pool| {
            if !wild.contains(key) {
                return true;
            }
            // Only the map holds it: no session, waiter or janitor task.
            let unused = Arc::strong_count(pool) == 1 && pool.snapshot().total == 0;
            if unused {
                tracing::debug!(pool = ?key, "dropping an unused wildcard database pool");
                pool.remove();
                wild.remove(key);
            }
            !unused
        });
    }

    /// Every pool, for the admin console and the janitor.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Applies a reloaded config: new sizes and timeouts; pools whose database or user is
    /// gone are removed (their clients keep their current server until they leave).
    pub fn reconfigure(&self, config: &Config, tls: Arc<Built>) {
        self.tls.store(tls);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|key, pool| match self.settings(config, key) {
            Some(s) => {
                // Same gates, new limits.
                let _ = self.gates_for(config, key);
                pool.update(s);
                true
            }
            None => {
                pool.remove();
                false
            }
        });
    }
}

impl Pool {
    fn update(&self, settings: PoolSettings) {
        let mut g = self.lock();
        let target_changed = g.settings.target != settings.target;
        g.settings = settings;
        let stale: Vec<Box<ServerConn>> = if target_changed {
            g.params = None;
            g.idle.drain(..).collect()
        } else {
            Vec::new()
        };
        self.shrink(&mut g, stale.len());
        drop(g);
        stale.into_iter().for_each(ServerConn::close);
        // A larger pool can serve waiters at once.
        self.serve_waiters(Instant::now());
    }

    fn remove(&self) {
        let mut g = self.lock();
        g.removed = true;
        let stale: Vec<Box<ServerConn>> = g.idle.drain(..).collect();
        self.shrink(&mut g, stale.len());
        g.waiters.clear();
        drop(g);
        stale.into_iter().for_each(ServerConn::close);
    }

    /// Closes expired idle connections; returns how many to open to reach the minimum.
    fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut g = self.lock();
        let mut stale = Vec::new();
        let mut keep = std::collections::VecDeque::with_capacity(g.idle.len());
        while let Some(mut c) = g.idle.pop_front() {
            if expired(&g.settings, &c, now).is_some() || c.has_unexpected_data() {
                stale.push(c);
            } else {
                keep.push_back(c);
            }
        }
        g.idle = keep;
        self.shrink(&mut g, stale.len());
        let missing = g
            .settings
            .min_size
            .min(g.settings.size)
            .saturating_sub(g.total);
        drop(g);
        stale.into_iter().for_each(ServerConn::close);
        missing
    }

    /// Opens one connection for the minimum and parks it idle.
    async fn prefill(&self) {
        let (target, timeout) = {
            let mut g = self.lock();
            let min = g.settings.min_size.min(g.settings.size);
            if g.removed || !self.grow(&mut g, min) {
                return;
            }
            (g.settings.target.clone(), g.settings.connect_timeout)
        };
        match self.open(&target, timeout).await {
            Ok(conn) => self.checkin(conn),
            Err(e) => tracing::warn!(pool = ?self.key, "cannot open minimum connection: {e}"),
        }
    }
}

/// How often waiters' deadlines (`query_wait_timeout`) are checked: a client that waited
/// too long gets its error up to this much late.
pub const WAIT_CHECK: Duration = Duration::from_millis(50);

/// Serves waiters held back by a gate or due a reserve connection; where a full gate
/// holds a pool's waiters back, closes an idle connection of another pool behind it.
fn serve_all_waiters(all: &[Arc<Pool>], now: Instant) {
    for pool in all {
        if !pool.serve_waiters(now) {
            continue;
        }
        let freed = all.iter().any(|other| {
            !Arc::ptr_eq(other, pool)
                && pool.gates.blocked_by(&other.gates)
                && other.close_one_idle()
        });
        if freed {
            pool.serve_waiters(now);
        }
    }
}

/// Told when a pool gets its first waiter: the janitor, idle while no client waits for a
/// server, checks deadlines again (every janitor of the process is told; a spurious
/// wake-up costs one pass).
pub(super) static WAITING: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Expires waiters every [`WAIT_CHECK`] while any client waits for a server, and runs
/// maintenance over every pool once a second, until the process ends. With no waiter it
/// sleeps until the next second's maintenance or the next waiter (an idle pgsluice's
/// worker woke 20 times a second for this before).
pub async fn maintain_all(pools: Arc<Pools>) {
    let mut last_sweep = Instant::now();
    loop {
        // Listening before looking: a waiter queued after the look still wakes it.
        let queued = WAITING.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let now = Instant::now();
        let all = pools.all();
        for pool in &all {
            pool.expire_waiters(now);
        }
        serve_all_waiters(&all, now);
        let waiting = all.iter().any(|p| p.has_waiters());
        if now.duration_since(last_sweep) >= Duration::from_secs(1) {
            last_sweep = now;
            sweep(&pools, all);
        } else {
            drop(all);
        }
        let sweep_at = tokio::time::Instant::from_std(last_sweep + Duration::from_secs(1));
        if waiting {
            let to_sweep = sweep_at.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(WAIT_CHECK.min(to_sweep)).await;
        } else {
            tokio::select! {
                () = &mut queued => {}
                () = tokio::time::sleep_until(sweep_at) => {}
            }
        }
    }
}

/// Each pool's once-a-second maintenance (idle and lifetime limits, minimum connections),
/// then the wildcard pools no client uses any more.
fn sweep(pools: &Pools, all: Vec<Arc<Pool>>) {
    for pool in all {
        let missing = pool.sweep();
        if missing > 0 {
            // Off this loop: a slow connect must not hold up the waiters' deadlines.
            tokio::spawn(async move {
                for _ in 0..missing {
                    pool.prefill().await;
                }
            });
        }
    }
    // After `all` is gone: a pool only the map holds is unused.
    pools.drop_unused_wildcard_pools();
}
