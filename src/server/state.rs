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
    /// Custom settings (names with a dot) clients set on this backend. Each leaves a
    /// placeholder that no RESET or DISCARD removes, which a client that never set it
    /// would see (`SHOW` answers where it would fail; a library loaded later warns).
    pub placeholders: Vec<Box<str>>,
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
            placeholders: Vec::new(),
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
            placeholders: Vec::new(),
        }
    }

    /// Adds the custom settings now recorded to [`ServerState::placeholders`].
    pub fn keep_placeholders(&mut self) {
        if !self.gucs.has_custom() {
            return;
        }
        for name in self.gucs.names() {
            if name.contains('.') && !self.placeholders.iter().any(|p| &**p == name) {
                self.placeholders.push(name.into());
            }
        }
    }

    /// Idle, with nothing unread: another client could use it as it is.
    pub fn is_quiet(&self) -> bool {
        self.status == b'I' && self.buf.is_empty()
    }
}
