//! What every task shares: the current configuration (swapped whole on reload), the pools,
//! the client list (cancel keys), the client count and the drain signal.

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::auth::Secret;
use crate::config::Config;
use crate::pool::Pools;

pub use crate::auth::UserAuth;

/// One loaded configuration and what is derived from it.
pub struct Snapshot {
    pub config: Config,
    pub users: HashMap<String, UserAuth>,
    /// The certificates and keys the configuration names, read and built.
    pub tls: Arc<crate::tls::Built>,
    /// `routing.read_only_functions`, built once and shared by every session (one per
    /// session was memory per idle client).
    pub allow: Arc<crate::router::Allowlist>,
}

/// Reads the TLS material `config` names; an error names the config key.
pub fn load_tls(config: &Config) -> Result<Arc<crate::tls::Built>, crate::config::ConfigError> {
    crate::tls::Built::load(config)
        .map(Arc::new)
        .map_err(|e| crate::config::ConfigError::Invalid {
            key: e.key().to_string(),
            reason: e.to_string(),
        })
}

impl Snapshot {
    pub fn new(config: Config, tls: Arc<crate::tls::Built>) -> Snapshot {
        let users = config
            .users
            .iter()
            .map(|u| {
                let secret = u.password.as_deref().and_then(|p| Secret::parse(p).ok());
                (u.name.clone(), UserAuth::new(&u.name, secret))
            })
            .collect();
        let allow = Arc::new(crate::router::Allowlist::new(
            &config.routing.read_only_functions,
        ));
        Snapshot {
            config,
            users,
            tls,
            allow,
        }
    }
}

/// The shutdown phases clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM: clients leave at their next transaction boundary.
    Draining,
    /// `shutdown_timeout` passed: every client is closed now.
    Closing,
    /// Done: workers stop.
    Exit,
}

/// State shared by the listener, every client task and the janitor.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub pools: Arc<Pools>,
    /// Every database's nodes and their health.
    pub nodes: crate::router::Nodes,
    /// Every distinct named statement clients prepared (transaction/statement mode).
    pub statements: Arc<crate::prepare::Registry>,
    pub clients: AtomicUsize,
    /// Clients waiting in their worker's lot, with no task (see `client/lot.rs`).
    pub parked: AtomicUsize,
    /// Times a client was parked, since start.
    pub parks: std::sync::atomic::AtomicU64,
    /// Wakes the lot's sweeper early: a worker came under parking pressure (see
    /// `client::lot::sweep`).
    pub park_pressure: tokio::sync::Notify,
    /// Where shutdown stands. Change it with [`Shared::set_phase`], which also wakes the
    /// sessions (they do not poll this channel).
    pub drain: watch::Sender<Phase>,
    /// Wakes every client session (phase changes, KILL).
    pub sessions: crate::wake::SessionWaker,
    pub config_path: Option<PathBuf>,
    /// The admin console's client list and PAUSE/DISABLE/KILL/SHUTDOWN state.
    pub admin: crate::registry::Control,
    /// Per-pool statistics for the console and `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Faults tests inject through the library API; never set by the binary.
    pub failpoints: Arc<Failpoints>,
    /// Secrets looked up with `auth_query`.
    pub auth_cache: crate::auth::cache::AuthCache,
    /// The listening server connections that serve clients' LISTEN (see `listen/`).
    pub listeners: crate::listen::Listeners,
}

/// Faults a test can inject into a running pgsluice (through the library API only: the
/// binary and the configuration never set them). Unarmed, a check is one relaxed load.
#[derive(Default)]
pub struct Failpoints {
    armed: std::sync::atomic::AtomicBool,
    panic_on: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Failpoints {
    /// Makes a session panic when it sends a server a Query containing `needle`.
    pub fn panic_on_query(&self, needle: &str) {
        *self.panic_on.lock().unwrap_or_else(|e| e.into_inner()) = Some(needle.as_bytes().to_vec());
        self.armed.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether any failpoint is armed.
    pub fn armed(&self) -> bool {
        self.armed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Panics if `query` contains the armed needle.
    #[inline]
    pub fn check_query(&self, query: &[u8]) {
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let hit = self
            .panic_on
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .is_some_and(|n| !n.is_empty() && query.windows(n.len()).any(|w| w == n));
        if hit {
            panic!("failpoint: panic_on_query");
        }
    }
}

impl Shared {
    /// The shared state for `config`, its TLS material read (an error names the key).
    pub fn try_new(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Arc<Shared>, crate::config::ConfigError> {
        let tls = load_tls(&config)?;
        Ok(Shared::with_tls(config, tls, config_path))
    }

    /// [`Shared::try_new`] for tests and embedders: TLS material that cannot be read is
    /// logged and left out (no client TLS, servers without TLS).
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Arc<Shared> {
        let tls = load_tls(&config).unwrap_or_else(|e| {
            tracing::error!("TLS disabled: {e}");
            Arc::default()
        });
        Shared::with_tls(config, tls, config_path)
    }

    fn with_tls(
        config: Config,
        tls: Arc<crate::tls::Built>,
        config_path: Option<PathBuf>,
    ) -> Arc<Shared> {
        let nodes = crate::router::Nodes::default();
        nodes.sync(&config);
        let workers = match config.general.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Arc::new(Shared {
            admin: Default::default(),
            metrics: crate::metrics::Metrics::new(workers),
            pools: Arc::new(Pools::new(tls.clone())),
            snapshot: ArcSwap::from_pointee(Snapshot::new(config, tls)),
            nodes,
            statements: Default::default(),
            clients: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            parks: Default::default(),
            park_pressure: tokio::sync::Notify::new(),
            drain: watch::channel(Phase::Running).0,
            sessions: Default::default(),
            failpoints: Arc::default(),
            config_path,
            auth_cache: Default::default(),
            listeners: Default::default(),
        })
    }

    /// Re-reads the config file and environment; on success swaps it in and resizes pools.
    /// A bad file is logged and the running config kept.
    pub fn reload(&self) -> Result<(), crate::config::ConfigError> {
        let config = Config::load(self.config_path.as_deref())?;
        let tls = load_tls(&config)?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        self.pools.reconfigure(&config, tls.clone());
        self.nodes.sync(&config);
        self.nodes.reread_functions();
        self.snapshot.store(Arc::new(Snapshot::new(config, tls)));
        tracing::info!("configuration reloaded");
        Ok(())
    }

    pub fn draining(&self) -> bool {
        *self.drain.borrow() != Phase::Running
    }

    pub fn phase(&self) -> Phase {
        *self.drain.borrow()
    }

    /// Moves to a shutdown phase and wakes every session to act on it.
    pub fn set_phase(&self, phase: Phase) {
        self.drain.send_replace(phase);
        self.sessions.wake_all();
    }
}

/// Rotates the statistics windows every `metrics.stats_period` (re-read after each tick,
/// so a reload applies) until the process ends.
pub async fn stats_ticker(shared: Arc<Shared>) {
    loop {
        let period = shared.snapshot.load().config.metrics.stats_period;
        tokio::time::sleep(std::time::Duration::from_secs_f64(period.max(1.0))).await;
        shared.metrics.rotate();
    }
}

impl crate::router::Source for Shared {
    fn nodes(&self) -> &crate::router::Nodes {
        &self.nodes
    }

    fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R {
        f(&self.snapshot.load().config)
    }

    fn pool_settings(
        &self,
        config: &Config,
        key: &crate::pool::PoolKey,
    ) -> Option<crate::pool::PoolSettings> {
        self.pools.settings(config, key)
    }
}
