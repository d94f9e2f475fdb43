//! The pooler-named statements prepared on one server connection, with least-recently-used
//! eviction (ids from the pooler-wide statement registry).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The statements prepared on one server connection, with least-recently-used eviction.
#[derive(Debug, Default)]
pub struct ServerStatements {
    used: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
    tick: u64,
}

/// See [`ServerStatements::own`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    Prepared,
    Prepare,
    Unnamed,
}

/// Hashes a statement id (pgsluice's own counter, never a client's value): a multiply,
/// and no per-map random state, which keeps every [`super::ServerState`] 16 bytes
/// smaller (it is moved on every transaction).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl ServerStatements {
    /// Whether `id` is prepared here (without marking it used).
    pub fn contains(&self, id: u64) -> bool {
        self.used.contains_key(&id)
    }

    /// Whether `id` is prepared here; marks it used.
    pub fn touch(&mut self, id: u64) -> bool {
        self.tick += 1;
        match self.used.get_mut(&id) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Where pgsluice's own statement `id` (the read-your-writes probe, the write-LSN
    /// read) stands here: already prepared (marked used, so eviction keeps it), to be
    /// prepared now (recorded at once, when the record holds fewer than `room`), or not
    /// at all (a full record keeps the client's statements; the caller sends it unnamed).
    pub fn own(&mut self, id: u64, room: usize) -> Own {
        if self.touch(id) {
            Own::Prepared
        } else if self.len() < room {
            self.insert(id);
            Own::Prepare
        } else {
            Own::Unnamed
        }
    }

    pub fn insert(&mut self, id: u64) {
        self.tick += 1;
        self.used.insert(id, self.tick);
    }

    pub fn remove(&mut self, id: u64) {
        self.used.remove(&id);
    }

    /// The ids recorded, in no order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.used.keys().copied()
    }

    pub fn clear(&mut self) {
        self.used.clear();
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The least recently used id other than `keep`.
    pub fn victim(&self, keep: u64) -> Option<u64> {
        self.used
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(_, t)| **t)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_victim_is_oldest() {
        let mut s = ServerStatements::default();
        s.insert(1);
        s.insert(2);
        s.insert(3);
        assert!(s.touch(1));
        assert_eq!(s.victim(3), Some(2));
        assert_eq!(s.victim(2), Some(3));
    }
}
