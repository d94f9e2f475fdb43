//! Pass-through credentials: what pgsluice logs in to servers with for a user whose
//! plaintext password it does not have.
//!
//! - an md5 hash (`md5...`, from the config or `auth_query`) answers md5 server
//!   authentication as is (the hash is the password-equivalent for md5), as PgBouncer does;
//! - a SCRAM verifier plus the ClientKey recovered from a client's SCRAM proof answers
//!   SCRAM server authentication (see `scram_client.rs`). The ClientKey is known only
//!   once a client of that user has logged in with SCRAM.

use std::collections::HashMap;
use std::sync::Mutex;

use super::scram::ScramVerifier;

/// One user's pass-through credential. Its `Debug` hides the secret.
#[derive(Clone)]
pub enum PassThrough {
    Md5(String),
    Scram {
        verifier: ScramVerifier,
        client_key: [u8; 32],
    },
}

impl std::fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PassThrough::Md5(_) => "PassThrough::Md5(..)",
            PassThrough::Scram { .. } => "PassThrough::Scram(..)",
        })
    }
}

/// The pass-through credentials learnt so far, by user name. Its `Debug` shows no secret.
///
/// # Concurrency note
/// A std `Mutex`: held only to clone or replace one entry, never across an `.await`.
#[derive(Default)]
pub struct Credentials {
    map: Mutex<HashMap<String, PassThrough>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        write!(f, "Credentials({} users)", map.len())
    }
}

/// Compared by identity: two pools' targets are the same when they share the store.
impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Credentials {}

impl Credentials {
    /// Records (or replaces) `user`'s credential.
    pub fn set(&self, user: &str, cred: PassThrough) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(user.to_string(), cred);
    }

    /// `user`'s credential, if one was learnt.
    pub fn get(&self, user: &str) -> Option<PassThrough> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(user).cloned()
    }
}
