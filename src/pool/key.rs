//! The name of a pool: database, user and node. Its `Debug` form is in every client's
//! closing log line, so it is written directly rather than through `debug_struct`.

use std::fmt;

/// Identifies a pool: one per database, user and node (0 is the primary).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: String,
    pub user: String,
    pub node: usize,
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
    use super::PoolKey;

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
