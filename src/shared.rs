//! What every task shares: the current configuration (swapped whole on reload), the pools,
//! the cancel-key registry, the client count and the drain signal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::auth::Secret;
use crate::auth::scram::ScramVerifier;
use crate::client::cancel::CancelRegistry;
use crate::config::Config;
use crate::pool::Pools;

/// A user's credentials, prepared once per config load (deriving a SCRAM verifier from a
/// plaintext password costs 4096 hash iterations; we do not pay that per login).
#[derive(Debug)]
pub struct UserAuth {
    pub secret: Option<Secret>,
    pub scram: Option<ScramVerifier>,
}

/// One loaded configuration and what is derived from it.
pub struct Snapshot {
    pub config: Config,
    pub users: HashMap<String, UserAuth>,
}

impl Snapshot {
    pub fn new(config: Config) -> Snapshot {
        let users = config
            .users
            .iter()
            .map(|u| {
                let secret = u.password.as_deref().and_then(|p| Secret::parse(p).ok());
                let scram = secret.as_ref().and_then(Secret::scram_verifier);
                (u.name.clone(), UserAuth { secret, scram })
            })
            .collect();
        Snapshot { config, users }
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
    pub cancels: CancelRegistry,
    /// Every distinct named statement clients prepared (transaction/statement mode).
    pub statements: crate::prepare::Registry,
    pub clients: AtomicUsize,
    /// Where shutdown stands. Change it with [`Shared::set_phase`], which also wakes the
    /// sessions (they do not poll this channel).
    pub drain: watch::Sender<Phase>,
    /// Wakes every client session (phase changes, KILL).
    pub sessions: crate::wake::SessionWaker,
    pub config_path: Option<PathBuf>,
    /// The admin console's client list and PAUSE/DISABLE/KILL/SHUTDOWN state.
    pub admin: crate::admin::Control,
    /// Per-pool statistics for the console and `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Secrets looked up with `auth_query`.
    pub auth_cache: crate::auth::query::AuthCache,
}

impl Shared {
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Arc<Shared> {
        let nodes = crate::router::Nodes::default();
        nodes.sync(&config);
        let workers = match config.general.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Arc::new(Shared {
            admin: Default::default(),
            metrics: crate::metrics::Metrics::new(workers),
            snapshot: ArcSwap::from_pointee(Snapshot::new(config)),
            pools: Arc::new(Pools::default()),
            nodes,
            cancels: CancelRegistry::default(),
            statements: Default::default(),
            clients: AtomicUsize::new(0),
            drain: watch::channel(Phase::Running).0,
            sessions: Default::default(),
            config_path,
            auth_cache: Default::default(),
        })
    }

    /// Re-reads the config file and environment; on success swaps it in and resizes pools.
    /// A bad file is logged and the running config kept.
    pub fn reload(&self) -> Result<(), crate::config::ConfigError> {
        let config = Config::load(self.config_path.as_deref())?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        self.pools.reconfigure(&config);
        self.nodes.sync(&config);
        self.snapshot.store(Arc::new(Snapshot::new(config)));
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
