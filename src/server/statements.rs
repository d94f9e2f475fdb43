//! The pooler-named statements prepared on one server connection, with least-recently-used
//! eviction (ids from the pooler-wide statement registry).

use std::collections::HashMap;

/// The statements prepared on one server connection, with least-recently-used eviction.
#[derive(Debug, Default)]
pub struct ServerStatements {
    used: HashMap<u64, u64>,
    tick: u64,
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

    pub fn insert(&mut self, id: u64) {
        self.tick += 1;
        self.used.insert(id, self.tick);
    }

    pub fn remove(&mut self, id: u64) {
        self.used.remove(&id);
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
