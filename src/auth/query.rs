//! `auth_query`: secrets of users not in `[[users]]`, looked up on the server as
//! `auth.auth_user` and cached for `auth.auth_cache_ttl` seconds.
//!
//! A role a DBA creates in PostgreSQL can log in through pgsluice with no config change;
//! a dropped role is refused once its cache entry is older than the TTL. Only found
//! secrets are cached: an unknown user is asked for again at its next login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Secret;
use crate::pool::PoolKey;
use crate::server::CloseReason;
use crate::shared::{Shared, UserAuth};

/// A cache key: (database, user).
type Key = (String, String);

/// Cached look-ups by (database, user).
///
/// # Concurrency note
/// A std `Mutex` held only to read or insert an entry; the query runs outside it (two
/// clients of a new user may both ask; the later answer wins).
#[derive(Default)]
pub struct AuthCache {
    map: Mutex<HashMap<Key, (Arc<UserAuth>, Instant)>>,
}

/// Why a look-up failed (the server could not be asked; not "no such user").
#[derive(Debug, thiserror::Error)]
#[error("auth_query as {auth_user:?} failed: {reason}")]
pub struct LookupError {
    pub auth_user: String,
    pub reason: String,
}

impl AuthCache {
    fn cached(&self, key: &Key, ttl: Duration) -> Option<Arc<UserAuth>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(a, _)| a.clone())
    }

    fn store(&self, key: Key, auth: Option<Arc<UserAuth>>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match auth {
            Some(a) => map.insert(key, (a, Instant::now())),
            None => map.remove(&key),
        };
    }
}

/// `user`'s secret for `database`, from the cache or the server. `Ok(None)`: no such
/// role, or a role without a password.
pub async fn lookup(
    shared: &Shared,
    database: &str,
    user: &str,
) -> Result<Option<Arc<UserAuth>>, LookupError> {
    let snap = shared.snapshot.load_full();
    let config = &snap.config;
    let Some(auth_user) = config.auth.auth_user.clone() else {
        return Ok(None);
    };
    let key = (database.to_string(), user.to_string());
    let ttl = Duration::from_secs_f64(config.auth.auth_cache_ttl);
    if let Some(hit) = shared.auth_cache.cached(&key, ttl) {
        return Ok(Some(hit));
    }
    let fail = |reason: String| LookupError {
        auth_user: auth_user.clone(),
        reason,
    };
    let pool = shared
        .pools
        .get(
            config,
            PoolKey {
                database: database.to_string(),
                user: auth_user.clone(),
                node: 0,
            },
        )
        .ok_or_else(|| fail("no pool for the auth_user".into()))?;
    let wait = crate::config::secs(config.general.query_wait_timeout);
    let mut conn = pool.checkout(wait).await.map_err(|e| fail(e.to_string()))?;
    let row = conn
        .query_row_params(&config.auth.auth_query, &[user])
        .await;
    let row = match row {
        Ok(r) if conn.status == b'I' => {
            pool.checkin(conn);
            r
        }
        Ok(r) => {
            pool.discard(conn, CloseReason::ResetFailed);
            r
        }
        Err(e) => {
            pool.discard(conn, CloseReason::Broken);
            return Err(fail(e.to_string()));
        }
    };
    let row = row.map_err(|e| fail(format!("{} ({})", e.message, e.code)))?;
    let secret = row
        .get(1)
        .cloned()
        .flatten()
        .filter(|s| !s.is_empty())
        .and_then(|s| Secret::parse(&s).ok());
    let auth = secret.map(|secret| {
        let scram = secret.scram_verifier();
        Arc::new(UserAuth {
            secret: Some(secret),
            scram,
        })
    });
    shared.auth_cache.store(key, auth.clone());
    Ok(auth)
}
