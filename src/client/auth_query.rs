//! `auth_query`: secrets of users not in `[[users]]`, looked up on the server as
//! `auth.auth_user` and cached for `auth.auth_cache_ttl` seconds
//! ([`crate::auth::cache`]).
//!
//! A role a DBA creates in PostgreSQL can log in through pgsluice with no config change;
//! a dropped role is refused once its cache entry is older than the TTL.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Secret, UserAuth};
use crate::server::CloseReason;
use crate::shared::Shared;

/// Why a look-up failed (the server could not be asked; not "no such user").
#[derive(Debug, thiserror::Error)]
#[error("auth_query as {auth_user:?} failed: {reason}")]
pub struct LookupError {
    pub auth_user: String,
    pub reason: String,
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
        .get(config, database, &auth_user, 0)
        .ok_or_else(|| fail("no pool for the auth_user".into()))?;
    let wait = crate::config::secs(config.general.query_wait_timeout);
    let mut conn = pool.checkout(wait).await.map_err(|e| fail(e.to_string()))?;
    let row = conn
        .query_row_params(&config.auth.auth_query, &[user])
        .await;
    let row = match row {
        Ok(r) if conn.state.status == b'I' => {
            conn.checkin();
            r
        }
        Ok(r) => {
            conn.discard(CloseReason::ResetFailed);
            r
        }
        Err(e) => {
            conn.discard(CloseReason::Broken);
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
    let auth = secret.map(|secret| Arc::new(UserAuth::new(user, Some(secret))));
    shared.auth_cache.store(key, auth.clone());
    Ok(auth)
}
