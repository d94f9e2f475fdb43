//! Cancel keys: each client gets pgsluice's own BackendKeyData; a CancelRequest with that
//! key finds the server the client is using at that moment (forwarded by `client::cancel`).
//!
//! # Concurrency note
//! The registry map is locked only at login, logout and cancel. The server a client uses
//! is read from its entry in the client list ([`ClientInfo::server`]), which the session
//! updates when it takes or gives back a server: one record, one lock, for both.

// foldhash (seeded per process), not SipHash: these maps are touched at every login.
use foldhash::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::clients::ClientInfo;
pub use crate::server::CancelTarget;

/// One client's cancel key, and the client it cancels for.
pub struct CancelSlot {
    pub pid: u32,
    pub secret: u32,
    /// Set once the client's entry exists (never, for a console client: nothing to cancel).
    client: OnceLock<Arc<ClientInfo>>,
}

impl CancelSlot {
    /// The key cancels what `client` runs on its server from now on.
    pub fn bind(&self, client: Arc<ClientInfo>) {
        let _ = self.client.set(client);
    }
}

/// Every logged-in client's key.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<u32, Arc<CancelSlot>>>,
    next_pid: AtomicU32,
}

impl CancelRegistry {
    /// Issues a fresh key for a client.
    pub fn register(&self) -> Arc<CancelSlot> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        while pid == 0 || map.contains_key(&pid) {
            pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        }
        let slot = Arc::new(CancelSlot {
            pid,
            secret: rand::random(),
            client: OnceLock::new(),
        });
        map.insert(pid, slot.clone());
        slot
    }

    /// Forgets a client's key when its session ends.
    pub fn remove(&self, pid: u32) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&pid);
    }

    /// The server to cancel for a key, if the key is valid and its client is on a server.
    pub fn lookup(&self, pid: u32, secret: u32) -> Option<CancelTarget> {
        let slot = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&pid)?.clone()
        };
        if slot.secret != secret {
            return None;
        }
        Some(slot.client.get()?.server()?.cancel_target())
    }
}
