//! The name of a pool: database, user and node. Its `Debug` form is in every client's
//! closing log line, so it is written directly rather than through `debug_struct`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Identifies a pool: one per database, user and node (0 is the primary).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    pub node: usize,
}

/// A pool's name as borrowed strings: finds a pool in a map keyed by [`PoolKey`] without
/// building the key's two strings (a login looks its pool up each time).
pub trait KeyView {
    /// Database, user and node.
    fn view(&self) -> (&str, &str, usize);
}

impl KeyView for PoolKey {
    fn view(&self) -> (&str, &str, usize) {
        (&self.database, &self.user, self.node)
    }
}

impl KeyView for (&str, &str, usize) {
    fn view(&self) -> (&str, &str, usize) {
        *self
    }
}

/// Hashes as `PoolKey`'s derived `Hash` does: each field in order.
impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

impl<'a> Borrow<dyn KeyView + 'a> for PoolKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl fmt::Debug for PoolKey {
    /// What `#[derive(Debug)]` writes, in fewer steps when the names need no escaping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = |s: &str| {
            s.bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        let flags = f.alternate() || f.width().is_some() || f.precision().is_some();
        if flags || !plain(&self.database) || !plain(&self.user) {
            return f
                .debug_struct("PoolKey")
                .field("database", &self.database)
                .field("user", &self.user)
                .field("node", &self.node)
                .finish();
        }
        f.write_str("PoolKey { database: \"")?;
        f.write_str(&self.database)?;
        f.write_str("\", user: \"")?;
        f.write_str(&self.user)?;
        write!(f, "\", node: {} }}", self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyView, PoolKey};

    /// A borrowed view finds what its owned key was stored under, and only that.
    #[test]
    fn a_borrowed_view_finds_the_owned_key() {
        let mut map = std::collections::HashMap::new();
        let names: [(&str, &str, usize); 4] = [
            ("app", "u", 0),
            ("app", "v", 0),
            ("app", "u", 1),
            ("ap", "pu", 0),
        ];
        for (d, u, n) in names {
            let k = PoolKey {
                database: d.into(),
                user: u.into(),
                node: n,
            };
            map.insert(k, format!("{d}/{u}/{n}"));
        }
        for (d, u, n) in names {
            let view = (d, u, n);
            assert_eq!(
                map.get(&view as &dyn KeyView),
                Some(&format!("{d}/{u}/{n}"))
            );
        }
        let others: [(&str, &str, usize); 3] = [("appu", "", 0), ("app", "u", 2), ("", "appu", 0)];
        for (d, u, n) in others {
            assert_eq!(map.get(&(d, u, n) as &dyn KeyView), None);
        }
    }

    /// The same text as the derived `Debug`.
    #[test]
    fn debug_as_derived() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct PoolKey2 {
            database: String,
            user: String,
            node: usize,
        }
        for (d, u, n) in [("app", "postgres", 0), ("a\"b", "é\\", 3), ("x\ny", "", 12)] {
            let k = PoolKey {
                database: d.into(),
                user: u.into(),
                node: n,
            };
            let k2 = PoolKey2 {
                database: d.into(),
                user: u.into(),
                node: n,
            };
            let want = format!("{k2:?}").replacen("PoolKey2", "PoolKey", 1);
            assert_eq!(format!("{k:?}"), want);
            let want = format!("{k2:#?}").replacen("PoolKey2", "PoolKey", 1);
            assert_eq!(format!("{k:#?}"), want);
        }
    }
}
