//! Named prepared statements in transaction and statement mode.
//!
//! Clients name their statements as they like (`s0`, `__asyncpg_stmt_1__`, ...), and many
//! clients reuse the same names for different queries. pgsluice gives every distinct
//! statement — the exact query text and parameter types, compared byte for byte, never by
//! hash alone — one pooler-wide server-side name, `sluice_<id>`. Each server connection
//! remembers which ids it has prepared (bounded, least recently used evicted), so a
//! thousand clients preparing the same query share one server-side statement per server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

/// Prefix of every server-side statement name pgsluice creates.
pub const SERVER_PREFIX: &str = "sluice_";

/// Registry size past which statements no client holds any more are forgotten.
const SWEEP_AT: usize = 10_000;

/// One distinct statement: query text and parameter types.
#[derive(Debug)]
pub struct Statement {
    pub id: u64,
    /// A server accepted this statement once: it is valid SQL with valid types, so a
    /// client preparing it again can be answered without a server.
    pub validated: std::sync::atomic::AtomicBool,
    /// The server-side name.
    pub name: String,
    /// The Parse body after the name: query, parameter count and type OIDs.
    key: Bytes,
    /// Read/write class, computed the first time the router asks.
    class: std::sync::OnceLock<crate::router::Class>,
    /// [`Statement::touches_sequences`], computed the first time a Bind asks.
    touches_seq: std::sync::OnceLock<bool>,
    /// Client Parse messages naming this statement (admin console: SHOW PREPARED).
    pub client_prepares: AtomicU64,
    /// Parse messages pgsluice sent to servers for it.
    pub server_prepares: AtomicU64,
    /// Client Parse messages pgsluice answered itself, without a server round trip.
    pub local_answers: AtomicU64,
}

impl Statement {
    /// A Parse message preparing this statement under its server-side name.
    pub fn parse_frame(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(6 + self.name.len() + self.key.len());
        b.put_u8(b'P');
        b.put_i32((4 + self.name.len() + 1 + self.key.len()) as i32);
        b.put_slice(self.name.as_bytes());
        b.put_u8(0);
        b.put_slice(&self.key);
        b.freeze()
    }

    /// For a statement from SQL `PREPARE`: the `PREPARE` that creates it under its
    /// server-side name.
    pub fn prepare_sql(&self) -> Option<String> {
        let body_end = self.key.iter().position(|&b| b == 0)?;
        let types = self.key[body_end + 1..].strip_prefix(SQL_MARK)?;
        let types = std::str::from_utf8(types).ok()?;
        Some(format!("PREPARE {} {types} AS {}", self.name, self.query()))
    }

    /// The statement's read/write class, classified once for its lifetime.
    pub fn class(&self, classifier: &crate::router::Classifier) -> crate::router::Class {
        self.class
            .get_or_init(|| classifier.classify(self.query()))
            .clone()
    }

    /// Whether running it may read or set a session's sequence values: its class is not
    /// read-only (a write may call `nextval`), or its text names `currval` or `lastval`.
    /// Once for its lifetime, as its class: a Bind asked both, and scanned the text, at
    /// every transaction (~330 instructions in prepared mode, stop 42).
    pub fn touches_sequences(&self, classifier: &crate::router::Classifier) -> bool {
        *self.touches_seq.get_or_init(|| {
            !self.class(classifier).read_only
                || crate::sql::reads_sequence_values(self.query().as_bytes())
        })
    }

    /// Parameter types the client declared (admin console).
    pub fn param_count(&self) -> usize {
        let end = self.key.iter().position(|&b| b == 0).map_or(0, |i| i + 1);
        self.key
            .get(end..end + 2)
            .map_or(0, |n| u16::from_be_bytes([n[0], n[1]]) as usize)
    }

    /// The query text, for logs and the admin console.
    pub fn query(&self) -> &str {
        let end = self
            .key
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.key.len());
        std::str::from_utf8(&self.key[..end]).unwrap_or("")
    }
}

/// A Close message for a server-side statement name.
pub fn close_frame(name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(7 + name.len());
    b.put_u8(b'C');
    b.put_i32((4 + 1 + name.len() + 1) as i32);
    b.put_u8(b'S');
    b.put_slice(name.as_bytes());
    b.put_u8(0);
    b.freeze()
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("statements", &self.len())
            .finish()
    }
}

/// Every distinct statement clients have prepared.
#[derive(Default)]
pub struct Registry {
    /// By Parse body; hashed on every client Parse: foldhash (seeded per process).
    map: Mutex<HashMap<Bytes, Arc<Statement>, foldhash::fast::RandomState>>,
    next: AtomicU64,
    /// Parse messages pgsluice sent to servers (the client's or its own).
    pub server_parses: AtomicU64,
    /// Client Parse messages answered by pgsluice without a server round trip.
    pub local_parses: AtomicU64,
}

/// Marks the key of an SQL-level statement: `body NUL SQL_MARK types`. A protocol-level key
/// has a binary parameter count where this mark stands.
const SQL_MARK: &[u8] = b"\xffSQL PREPARE\0";

impl Registry {
    /// The statement for an SQL `PREPARE name (types) AS body`, registering it if new.
    /// It shares ids and server-side names with protocol-level statements (PostgreSQL
    /// keeps both in one namespace per connection).
    pub fn intern_sql(&self, body: &str, types: &str) -> Arc<Statement> {
        let mut key = Vec::with_capacity(body.len() + SQL_MARK.len() + types.len() + 1);
        key.extend_from_slice(body.as_bytes());
        key.push(0);
        key.extend_from_slice(SQL_MARK);
        key.extend_from_slice(types.as_bytes());
        self.intern(&key)
    }

    /// The statement for a Parse body (after its name), registering it if new.
    pub fn intern(&self, key: &[u8]) -> Arc<Statement> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(key) {
            return s.clone();
        }
        if map.len() >= SWEEP_AT {
            map.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let key = Bytes::copy_from_slice(key);
        let stmt = Arc::new(Statement {
            id,
            validated: Default::default(),
            name: format!("{SERVER_PREFIX}{id}"),
            key: key.clone(),
            class: Default::default(),
            touches_seq: Default::default(),
            client_prepares: AtomicU64::new(0),
            server_prepares: AtomicU64::new(0),
            local_answers: AtomicU64::new(0),
        });
        map.insert(key, stmt.clone());
        stmt
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every registered statement, by id (admin console).
    pub fn all(&self) -> Vec<Arc<Statement>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_statement() {
        let r = Registry::default();
        let a = r.intern(b"SELECT 1\0\0\0");
        let b = r.intern(b"SELECT 1\0\0\0");
        let c = r.intern(b"SELECT 1\0\0\x01\0\0\0\x17");
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(a.query(), "SELECT 1");
        assert_eq!(&a.parse_frame()[..], b"P\0\0\0\x18sluice_1\0SELECT 1\0\0\0");
    }

    /// A statement's answer, kept for its lifetime, is what its class and its text say.
    #[test]
    fn a_statement_touches_sequences_as_its_class_and_text_say() {
        use crate::router::{Allowlist, Classifier};
        let c = Classifier::new(std::sync::Arc::new(Allowlist::default()));
        let r = Registry::default();
        for (sql, touches) in [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                false,
            ),
            ("SELECT currval('s')", true),
            ("select LASTVAL()", true),
            ("SELECT nextval('s')", true),
            ("INSERT INTO t VALUES ($1)", true),
            ("UPDATE t SET a = 1", true),
        ] {
            let s = r.intern(format!("{sql}\0\0\0").as_bytes());
            let expected =
                !s.class(&c).read_only || crate::sql::reads_sequence_values(sql.as_bytes());
            assert_eq!(expected, touches, "{sql}");
            assert_eq!(s.touches_sequences(&c), touches, "{sql}");
            assert_eq!(s.touches_sequences(&c), touches, "{sql}, asked again");
        }
    }
}
