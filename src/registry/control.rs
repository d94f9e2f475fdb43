//! What the console's PAUSE, RESUME, DISABLE, ENABLE, KILL and SHUTDOWN change (sessions
//! obey it in `client`).
//!
//! # Concurrency note
//! Each database has one [`DbControl`], found by name at login (under the map's lock) and
//! kept by the session. A session checks `paused` with one `Relaxed` load before it takes
//! a server; only while that is set does it wait, on the control's watch channel.

// foldhash (seeded per process), not SipHash: the map is looked up at every login.
use foldhash::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::clients::{ClientState, Registry};

/// The console's state for one database.
pub struct DbControl {
    pub name: String,
    paused: AtomicBool,
    disabled: AtomicBool,
    /// Bumped on every change, to wake held clients.
    changed: watch::Sender<u64>,
}

impl DbControl {
    fn new(name: String, paused: bool) -> DbControl {
        DbControl {
            name,
            paused: AtomicBool::new(paused),
            disabled: AtomicBool::new(false),
            changed: watch::channel(0).0,
        }
    }

    #[inline]
    pub fn paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    pub fn disabled(&self) -> bool {
        self.disabled.load(Relaxed)
    }

    fn set_paused(&self, v: bool) {
        self.paused.store(v, Relaxed);
        self.changed.send_modify(|n| *n += 1);
    }

    fn set_disabled(&self, v: bool) {
        self.disabled.store(v, Relaxed);
    }

    /// Changes whenever PAUSE/RESUME/KILL touch this database: held clients wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// How the console asked pgsluice to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    None,
    /// SHUTDOWN WAIT_FOR_CLIENTS: as SIGTERM, clients leave at their next transaction
    /// boundary, up to `shutdown_timeout`.
    Drain,
    /// SHUTDOWN: every client and server connection is closed now.
    Now,
}

/// The admin console's shared state: the client list and per-database controls.
pub struct Control {
    pub clients: Registry,
    dbs: Mutex<HashMap<String, Arc<DbControl>>>,
    paused_all: AtomicBool,
    shutdown: watch::Sender<ShutdownRequest>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            clients: Registry::default(),
            dbs: Mutex::default(),
            paused_all: AtomicBool::new(false),
            shutdown: watch::channel(ShutdownRequest::None).0,
        }
    }
}

impl Control {
    /// The control of database `name`, created on first use (paused if everything is).
    pub fn db(&self, name: &str) -> Arc<DbControl> {
        let mut map = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up first: `entry` would copy the name at every login.
        if let Some(c) = map.get(name) {
            return c.clone();
        }
        map.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(DbControl::new(
                    name.to_string(),
                    self.paused_all.load(Relaxed),
                ))
            })
            .clone()
    }

    /// The controls of the named databases (or of every database known so far).
    fn targets(&self, names: Option<&[String]>) -> Vec<Arc<DbControl>> {
        match names {
            Some(names) => names.iter().map(|n| self.db(n)).collect(),
            None => {
                let map = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
                map.values().cloned().collect()
            }
        }
    }

    pub fn is_paused(&self, name: &str) -> bool {
        self.db(name).paused()
    }

    pub fn is_disabled(&self, name: &str) -> bool {
        self.db(name).disabled()
    }

    pub fn paused_all(&self) -> bool {
        self.paused_all.load(Relaxed)
    }

    /// PAUSE: holds new transactions of `db` (every database when `None`).
    pub fn pause(&self, db: Option<&str>) {
        if db.is_none() {
            self.paused_all.store(true, Relaxed);
        }
        let names = db.map(|d| vec![d.to_string()]);
        for c in self.targets(names.as_deref()) {
            c.set_paused(true);
        }
    }

    /// RESUME: releases held clients of `db` (of every database when `None`). False when
    /// nothing was paused.
    pub fn resume(&self, db: Option<&str>) -> bool {
        let mut was = false;
        if db.is_none() {
            was |= self.paused_all.swap(false, Relaxed);
        }
        let names = db.map(|d| vec![d.to_string()]);
        for c in self.targets(names.as_deref()) {
            was |= c.paused();
            c.set_paused(false);
        }
        was
    }

    pub fn set_disabled(&self, db: &str, v: bool) {
        self.db(db).set_disabled(v);
    }

    /// Marks every client of `db` killed and returns how many; the caller wakes them.
    pub fn kill_clients(&self, db: &str) -> usize {
        let mut n = 0;
        for c in self.clients.all() {
            if !c.is_console() && &*c.database == db {
                c.kill();
                n += 1;
            }
        }
        if let Some(c) = self.targets(Some(&[db.to_string()])).first() {
            // Wake the killed clients that are held by a PAUSE.
            c.changed.send_modify(|n| *n += 1);
        }
        n
    }

    /// Clients of `db` (of any database when `None`) that hold a server.
    pub fn active_clients(&self, db: Option<&str>) -> usize {
        self.clients.count(|c| {
            !c.is_console()
                && db.is_none_or(|d| &*c.database == d)
                && c.state() == ClientState::Active
        })
    }

    pub fn request_shutdown(&self, how: ShutdownRequest) {
        self.shutdown.send_replace(how);
    }

    /// Waits until the console asks for a shutdown, and says how.
    pub async fn shutdown_requested(&self) -> ShutdownRequest {
        let mut rx = self.shutdown.subscribe();
        loop {
            let how = *rx.borrow_and_update();
            if how != ShutdownRequest::None {
                return how;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The error a killed client gets.
pub fn killed(db: &str) -> (String, String) {
    (
        "57P01".into(),
        format!("terminating connection: database \"{db}\" was killed from the admin console"),
    )
}
