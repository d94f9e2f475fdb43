//! The cache of `auth_query` look-ups: secrets of users not in `[[users]]`, kept for
//! `auth.auth_cache_ttl` seconds. (The look-up itself is in `client::auth_query`.) Only
//! found secrets are cached: an unknown user is asked for again at its next login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::UserAuth;

/// A cache key: (database, user).
pub type Key = (String, String);

/// Cached look-ups by (database, user).
///
/// # Concurrency note
/// A std `Mutex` held only to read or insert an entry; the query runs outside it (two
/// clients of a new user may both ask; the later answer wins).
#[derive(Default)]
pub struct AuthCache {
    map: Mutex<HashMap<Key, (Arc<UserAuth>, Instant)>>,
}

impl AuthCache {
    pub fn cached(&self, key: &Key, ttl: Duration) -> Option<Arc<UserAuth>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(a, _)| a.clone())
    }

    pub fn store(&self, key: Key, auth: Option<Arc<UserAuth>>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match auth {
            Some(a) => map.insert(key, (a, Instant::now())),
            None => map.remove(&key),
        };
    }
}
