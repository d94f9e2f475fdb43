//! What a client session sees and changes of a server connection, apart from its socket:
//! the bytes read and not yet handled, the transaction status, the settings and the
//! statements applied to it. The session core owns it while the client holds the
//! connection; no I/O here, so the core can be tested with a plain value.

use std::sync::Arc;

use bytes::BytesMut;

use super::ServerStatements;
use super::varcache::Gucs;

/// The protocol-level state of one server connection.
#[derive(Debug)]
pub struct ServerState {
    /// The connection's id (admin console, logs).
    pub id: u64,
    /// Bytes read from the server and not yet handled.
    pub buf: BytesMut,
    /// Transaction status from the last ReadyForQuery (`I`, `T` or `E`).
    pub status: u8,
    /// Settings applied to this connection beyond the server's defaults.
    pub gucs: Arc<Gucs>,
    /// Pooler-named statements prepared on this connection.
    pub statements: ServerStatements,
    /// The client that used it last (0: none): an unnamed statement it holds is that
    /// client's.
    pub last_client: u32,
    /// Whose sequence values (`currval`, `lastval`) the backend may hold: 0 none, a
    /// client's id, or `u32::MAX` for several clients'.
    pub seq_owner: u32,
    /// What few connections ever have (boxed: a state over 128 bytes is copied by a call
    /// instead of a few moves each time it goes between the pool and a session, and a
    /// session's attachment holds it too).
    pub rare: Option<Box<Rare>>,
}

/// The rarely used part of a [`ServerState`].
#[derive(Debug, Default)]
pub struct Rare {
    /// Custom settings (names with a dot) clients set on this backend. Each leaves a
    /// placeholder that no RESET or DISCARD removes, which a client that never set it
    /// would see (`SHOW` answers where it would fail; a library loaded later warns).
    pub placeholders: Vec<Box<str>>,
    /// The holding client's SQL-level statements prepared here under their own names,
    /// deallocated before the server goes back (`client/core/own_names.rs`).
    pub own_names: Vec<String>,
}

impl ServerState {
    pub fn new(id: u64) -> ServerState {
        ServerState {
            id,
            buf: BytesMut::new(),
            status: b'I',
            gucs: Arc::default(),
            statements: ServerStatements::default(),
            last_client: 0,
            seq_owner: 0,
            rare: None,
        }
    }

    /// What a connection keeps while its state is lent to a session core: never quiet, so
    /// a lease dropped meanwhile (a panic, a cancelled task) closes the connection.
    pub fn lent(id: u64) -> ServerState {
        // A checkout makes one per transaction: it shares one empty settings record
        // instead of allocating its own.
        static NO_GUCS: std::sync::LazyLock<Arc<Gucs>> = std::sync::LazyLock::new(Arc::default);
        ServerState {
            id,
            buf: BytesMut::new(),
            status: 0,
            gucs: NO_GUCS.clone(),
            statements: ServerStatements::default(),
            last_client: 0,
            seq_owner: 0,
            rare: None,
        }
    }

    /// Adds the custom settings now recorded to [`ServerState::placeholders`].
    #[inline]
    pub fn keep_placeholders(&mut self) {
        if self.gucs.has_custom() {
            self.keep_custom_names();
        }
    }

    fn keep_custom_names(&mut self) {
        let kept = &mut self.rare.get_or_insert_default().placeholders;
        for name in self.gucs.names() {
            if name.contains('.') && !kept.iter().any(|p| &**p == name) {
                kept.push(name.into());
            }
        }
    }

    /// The holding client's statements under their own names (empty when none).
    pub fn own_names(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |r| &r.own_names)
    }

    /// Takes [`Rare::own_names`] away (they are being deallocated).
    pub fn take_own_names(&mut self) -> Vec<String> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.own_names))
            .unwrap_or_default()
    }

    /// Idle, with nothing unread: another client could use it as it is.
    pub fn is_quiet(&self) -> bool {
        self.status == b'I' && self.buf.is_empty()
    }
}

#[cfg(test)]
mod size_tests {
    /// A `ServerState` moves between the pool and a session on every transaction: each
    /// move past 120 bytes became a `memcpy` call (measured with callgrind: about 500
    /// instructions per `pgbench -S` transaction at 144 bytes, about 230 at 128).
    #[test]
    fn server_state_stays_small() {
        let size = std::mem::size_of::<super::ServerState>();
        assert!(size <= 120, "ServerState is {size} bytes");
    }
}
