//! Cancel keys: each client gets pgsluice's own BackendKeyData; a CancelRequest with that
//! key finds the server the client is using at that moment (forwarded by `client::cancel`).
//!
//! # Concurrency note
//! The registry map is locked only at login, logout and cancel; a session updates its own
//! slot (an uncontended mutex) when it takes or gives back a server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::server::CancelTarget;

/// One client's cancel key and current server.
#[derive(Debug)]
pub struct CancelSlot {
    pub pid: u32,
    pub secret: u32,
    target: Mutex<Option<CancelTarget>>,
}

impl CancelSlot {
    pub fn set(&self, target: Option<CancelTarget>) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
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
            target: Mutex::new(None),
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
        slot.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
