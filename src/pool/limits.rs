//! Limits that span pools: server connections per database and per user
//! (`max_db_connections`, `max_user_connections`), and logged-in clients per database and
//! per user (`max_db_client_connections`, `max_user_client_connections`).
//!
//! # Concurrency note
//! A [`Gate`] is two atomics: a pool takes a place in it (compare-and-swap) while it holds
//! its own lock, and gives places back the same way; no lock is taken inside a gate, so
//! the lock order stays "one pool at a time". Waiters a gate holds back sit in their
//! pool's queue as for a full pool; the janitor hands them slots as places free up, and
//! closes an idle connection of another pool behind the same gate to make one (as
//! PgBouncer does).

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Server connections allowed across several pools.
#[derive(Debug, Default)]
pub struct Gate {
    /// 0: no limit.
    max: AtomicUsize,
    used: AtomicUsize,
}

impl Gate {
    /// Takes a place; false when the limit is reached.
    pub fn try_take(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            if max != 0 && used >= max {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives `n` places back.
    pub fn give(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Whether the limit is reached.
    pub fn full(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        max != 0 && self.used.load(Ordering::Relaxed) >= max
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }
}

/// The gates a pool's connections pass: its database's and its user's.
#[derive(Clone, Debug)]
pub struct Gates {
    pub db: Arc<Gate>,
    pub user: Arc<Gate>,
}

impl Gates {
    /// Gates with no limit (a pool made outside [`super::Pools`], as in benchmarks).
    pub fn open() -> Gates {
        Gates {
            db: Arc::default(),
            user: Arc::default(),
        }
    }

    /// Takes a place in both, or in neither.
    pub fn try_take(&self) -> bool {
        if !self.db.try_take() {
            return false;
        }
        if !self.user.try_take() {
            self.db.give(1);
            return false;
        }
        true
    }

    pub fn give(&self, n: usize) {
        if n > 0 {
            self.db.give(n);
            self.user.give(n);
        }
    }

    /// Whether a pool behind these gates shares one that is full with `other`.
    pub fn blocked_by(&self, other: &Gates) -> bool {
        (self.db.full() && Arc::ptr_eq(&self.db, &other.db))
            || (self.user.full() && Arc::ptr_eq(&self.user, &other.user))
    }
}

/// Every gate, by database and by user name.
#[derive(Default)]
pub struct GateMap {
    dbs: Mutex<HashMap<String, Arc<Gate>>>,
    users: Mutex<HashMap<String, Arc<Gate>>>,
}

impl GateMap {
    /// The gates of (database, user), made on first use, with these limits.
    pub fn gates(&self, db: &str, max_db: usize, user: &str, max_user: usize) -> Gates {
        let get = |m: &Mutex<HashMap<String, Arc<Gate>>>, name: &str, max: usize| {
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            let g = m.entry(name.to_string()).or_default().clone();
            g.max.store(max, Ordering::Relaxed);
            g
        };
        Gates {
            db: get(&self.dbs, db, max_db),
            user: get(&self.users, user, max_user),
        }
    }
}

/// Logged-in clients per database and per user.
#[derive(Debug, Default)]
pub struct ClientCounts {
    by_db: Mutex<HashMap<String, usize>>,
    by_user: Mutex<HashMap<String, usize>>,
}

/// A client's place in [`ClientCounts`] while it logs in: given up when dropped, unless
/// handed over to the client's record ([`ClientTicket::hand_over`]), which gives it up
/// itself with the same names (its own: one copy of them per client).
#[derive(Debug)]
pub struct ClientTicket {
    /// `None` once handed over.
    counts: Option<Arc<ClientCounts>>,
    db: Arc<str>,
    user: Arc<str>,
}

impl ClientTicket {
    /// The place, for a holder that calls [`ClientCounts::leave`] with the same database
    /// and user names when the client leaves (this ticket no longer will).
    pub fn hand_over(mut self) -> Option<Arc<ClientCounts>> {
        self.counts.take()
    }

    /// The database and user the place is counted under.
    pub fn names(&self) -> (&Arc<str>, &Arc<str>) {
        (&self.db, &self.user)
    }
}

/// Which client limit refused a login.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientLimit {
    #[error("too many clients for database \"{0}\": max_db_client_connections ({1}) reached")]
    Database(String, usize),
    #[error("too many clients for user \"{0}\": max_user_client_connections ({1}) reached")]
    User(String, usize),
}

fn bump(m: &Mutex<HashMap<String, usize>>, key: &str, max: usize) -> bool {
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    // Looked up first: `entry` would copy the key at every login.
    let n = match m.get_mut(key) {
        Some(n) => n,
        None => m.entry(key.to_string()).or_default(),
    };
    if max != 0 && *n >= max {
        return false;
    }
    *n += 1;
    true
}

fn drop_one(m: &Mutex<HashMap<String, usize>>, key: &str) {
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = m.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(key);
        }
    }
}

impl ClientCounts {
    /// Counts a client in, unless a limit (0: none) is reached.
    pub fn admit(
        self: &Arc<Self>,
        db: &Arc<str>,
        max_db: usize,
        user: &Arc<str>,
        max_user: usize,
    ) -> Result<ClientTicket, ClientLimit> {
        if !bump(&self.by_db, db, max_db) {
            return Err(ClientLimit::Database(db.to_string(), max_db));
        }
        if !bump(&self.by_user, user, max_user) {
            drop_one(&self.by_db, db);
            return Err(ClientLimit::User(user.to_string(), max_user));
        }
        Ok(ClientTicket {
            counts: Some(self.clone()),
            db: db.clone(),
            user: user.clone(),
        })
    }

    /// A client admitted under `db` and `user` left.
    pub fn leave(&self, db: &str, user: &str) {
        drop_one(&self.by_db, db);
        drop_one(&self.by_user, user);
    }

    /// Clients logged in to `db`.
    pub fn on_db(&self, db: &str) -> usize {
        let m = self.by_db.lock().unwrap_or_else(|e| e.into_inner());
        m.get(db).copied().unwrap_or(0)
    }
}

impl Drop for ClientTicket {
    fn drop(&mut self) {
        if let Some(counts) = self.counts.take() {
            counts.leave(&self.db, &self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_take_both_or_neither() {
        let map = GateMap::default();
        let a = map.gates("app", 2, "u", 0);
        let b = map.gates("app", 2, "v", 1);
        assert!(a.try_take());
        assert!(b.try_take());
        assert!(!a.try_take(), "database limit");
        b.give(1);
        assert!(b.try_take());
        assert!(!b.try_take(), "database and user full");
        assert_eq!(b.user.used(), 1);
        assert!(a.blocked_by(&b));
    }

    #[test]
    fn client_tickets_count_and_release() {
        let c = Arc::new(ClientCounts::default());
        let t1 = c.admit(&"app".into(), 2, &"u".into(), 0).unwrap();
        let _t2 = c.admit(&"app".into(), 2, &"v".into(), 1).unwrap();
        assert_eq!(
            c.admit(&"app".into(), 2, &"w".into(), 0).unwrap_err(),
            ClientLimit::Database("app".into(), 2)
        );
        drop(t1);
        assert_eq!(
            c.admit(&"app".into(), 2, &"v".into(), 1).unwrap_err(),
            ClientLimit::User("v".into(), 1)
        );
        assert_eq!(
            c.on_db("app"),
            1,
            "a refused user gives its database place back"
        );
    }
}
