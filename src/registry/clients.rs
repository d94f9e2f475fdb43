//! The list of logged-in clients that the admin console and `/metrics` read: one
//! [`ClientInfo`] per client, registered at login and removed when the session ends. A
//! client's id is its cancel key's process id, so the list is also where a CancelRequest
//! finds the server the client is using at that moment (forwarded by `client::cancel`).
//!
//! # Concurrency note
//! The registry's map is locked only at login, at logout, at a cancel and when the console
//! or a scrape lists clients. A session updates its own record without that lock: plain
//! `Relaxed` atomics that only it writes (state, times, counts), and an uncontended mutex
//! for the server it holds, taken when it takes or gives back a server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::control::DbControl;
use crate::pool::PoolKey;
use crate::pool::limits::{ClientCounts, ClientTicket};
pub use crate::server::CancelTarget;
use crate::sql::PinReason as Pin;

/// What a client is doing, as the console shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Logged in, holding no server.
    Idle = 0,
    /// Holding a server (in a transaction, or for the session).
    Active = 1,
    /// Waiting for a server (pool full, or held by PAUSE).
    Waiting = 2,
}

impl ClientState {
    pub fn name(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

/// Where a client comes from, known at login. Compact: it is in every idle client's
/// memory (two `Option<SocketAddr>` and a `String` were 88 bytes; these are 56).
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    addr: Addr,
    local_addr: Addr,
    application_name: Box<str>,
}

impl ClientMeta {
    /// The client's address, the address it reached pgsluice at, and its
    /// `application_name` startup parameter (empty when it sent none).
    pub fn new(
        addr: Option<SocketAddr>,
        local_addr: Option<SocketAddr>,
        application_name: &str,
    ) -> ClientMeta {
        ClientMeta {
            addr: Addr::from(addr),
            local_addr: Addr::from(local_addr),
            application_name: application_name.into(),
        }
    }

    /// The client's address (`None` over a Unix-domain socket).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr.get()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get()
    }

    pub fn application_name(&self) -> &str {
        &self.application_name
    }
}

/// A socket address as the client list shows it: the address and port, without an IPv6
/// address's flow label and scope id (20 bytes instead of 32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Addr {
    #[default]
    None,
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl From<Option<SocketAddr>> for Addr {
    fn from(a: Option<SocketAddr>) -> Addr {
        match a {
            None => Addr::None,
            Some(SocketAddr::V4(a)) => Addr::V4(a.ip().octets(), a.port()),
            Some(SocketAddr::V6(a)) => Addr::V6(a.ip().octets(), a.port()),
        }
    }
}

impl Addr {
    fn get(self) -> Option<SocketAddr> {
        match self {
            Addr::None => None,
            Addr::V4(ip, port) => Some(SocketAddr::from((ip, port))),
            Addr::V6(ip, port) => Some(SocketAddr::from((ip, port))),
        }
    }
}

pub use crate::server::ServerLink;

/// One logged-in client.
pub struct ClientInfo {
    /// The client's BackendKeyData process id (unique among logged-in clients).
    pub id: u32,
    /// The BackendKeyData secret that goes with it.
    pub secret: u32,
    pub user: Arc<str>,
    pub database: Arc<str>,
    /// The node of the pool it draws servers from now (with `user` and `database`, the
    /// pool's key; the router changes it per transaction); `CONSOLE` for admin console
    /// clients.
    node: std::sync::atomic::AtomicUsize,
    pub meta: ClientMeta,
    pub connected: SystemTime,
    /// The database's PAUSE/DISABLE/KILL state; `None` for admin console clients.
    pub db: Option<Arc<DbControl>>,
    state: AtomicU8,
    /// Microseconds since the metrics' start instant at which the current wait
    /// began (waiting) or the last request began (otherwise); 0 = not known.
    since_us: AtomicU64,
    killed: AtomicBool,
    /// Its session cannot park for the rest of its life (it LISTENs, or it is on TLS):
    /// the sweeper does not wake it to try.
    never_parks: AtomicBool,
    /// Bit `n` set: pinned for the reason with index `n` in [`PIN_REASONS`].
    pins: AtomicU32,
    xacts: AtomicU64,
    queries: AtomicU64,
    server: Mutex<Option<Arc<ServerLink>>>,
    /// Its place under the client limits, given up when the record goes (with `user` and
    /// `database`, the names it was counted under; see [`ClientInfo::admitted`]).
    admitted: Option<Arc<ClientCounts>>,
}

/// `ClientInfo::node` of an admin console client.
const CONSOLE: usize = usize::MAX;

/// Pin reasons in bit order of [`ClientInfo`]'s pin mask.
pub const PIN_REASONS: [Pin; 8] = [
    Pin::Listen,
    Pin::AdvisoryLock,
    Pin::TempObject,
    Pin::HoldCursor,
    Pin::SqlPrepare,
    Pin::SetConfig,
    Pin::ProtocolPrepare,
    Pin::Unknown,
];

/// The pin mask of a list of reasons.
pub fn pin_mask(pins: &[Pin]) -> u32 {
    pins.iter()
        .filter_map(|p| PIN_REASONS.iter().position(|r| r == p))
        .fold(0, |m, i| m | 1 << i)
}

impl ClientInfo {
    pub fn new(
        id: u32,
        user: Arc<str>,
        database: Arc<str>,
        node: Option<usize>,
        meta: ClientMeta,
        db: Option<Arc<DbControl>>,
    ) -> ClientInfo {
        ClientInfo {
            id,
            secret: rand::random(),
            user,
            database,
            node: std::sync::atomic::AtomicUsize::new(node.unwrap_or(CONSOLE)),
            meta,
            connected: SystemTime::now(),
            db,
            state: AtomicU8::new(ClientState::Idle as u8),
            since_us: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            never_parks: AtomicBool::new(false),
            pins: AtomicU32::new(0),
            xacts: AtomicU64::new(0),
            queries: AtomicU64::new(0),
            server: Mutex::new(None),
            admitted: None,
        }
    }

    /// The record keeps the client's place under the client limits (`ticket`, taken
    /// for the same user and database) until it goes.
    pub fn admitted(mut self, ticket: ClientTicket) -> ClientInfo {
        let (db, user) = ticket.names();
        debug_assert!(**db == *self.database && **user == *self.user);
        self.admitted = ticket.hand_over();
        self
    }

    /// The key of the pool it uses; `None` for admin console clients.
    pub fn pool_key(&self) -> Option<PoolKey> {
        self.node().map(|node| PoolKey {
            database: self.database.to_string(),
            user: self.user.to_string(),
            node,
        })
    }

    /// The node it draws servers from now; `None` for admin console clients.
    pub fn node(&self) -> Option<usize> {
        match self.node.load(Relaxed) {
            CONSOLE => None,
            n => Some(n),
        }
    }

    /// The router moved the client to another node's pool.
    pub fn set_node(&self, node: usize) {
        self.node.store(node, Relaxed);
    }

    /// A client of the admin console (it has no pool).
    pub fn is_console(&self) -> bool {
        self.node().is_none()
    }

    pub fn state(&self) -> ClientState {
        match self.state.load(Relaxed) {
            1 => ClientState::Active,
            2 => ClientState::Waiting,
            _ => ClientState::Idle,
        }
    }

    #[inline]
    pub fn set_state(&self, s: ClientState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Records when the current wait or request began (µs since pgsluice started).
    #[inline]
    pub fn set_since(&self, us: u64) {
        self.since_us.store(us.max(1), Relaxed);
    }

    pub fn since_us(&self) -> Option<u64> {
        Some(self.since_us.load(Relaxed)).filter(|&v| v != 0)
    }

    /// The client got the server `link` names: it is active on it (the state set under
    /// the lock, with the link).
    pub fn set_server(&self, link: Arc<ServerLink>) {
        let mut held = self.server.lock().unwrap_or_else(|e| e.into_inner());
        *held = Some(link);
        self.set_state(ClientState::Active);
    }

    /// The client gave its server back: it is idle and holds none.
    pub fn clear_server(&self) {
        let mut held = self.server.lock().unwrap_or_else(|e| e.into_inner());
        *held = None;
        self.set_state(ClientState::Idle);
    }

    /// The server the client holds, if any.
    pub fn server(&self) -> Option<Arc<ServerLink>> {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
    }

    pub fn killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    /// The session will not park again (see [`ClientInfo::never_parks`]).
    pub fn set_never_parks(&self) {
        self.never_parks.store(true, Relaxed);
    }

    pub fn never_parks(&self) -> bool {
        self.never_parks.load(Relaxed)
    }

    #[inline]
    pub fn set_pins(&self, mask: u32) {
        if self.pins.load(Relaxed) != mask {
            self.pins.store(mask, Relaxed);
        }
    }

    /// The reasons this client is pinned to its server.
    pub fn pins(&self) -> Vec<Pin> {
        let m = self.pins.load(Relaxed);
        (0..PIN_REASONS.len())
            .filter(|i| m & (1 << i) != 0)
            .map(|i| PIN_REASONS[i])
            .collect()
    }

    #[inline]
    pub fn add_counts(&self, xacts: u64, queries: u64) {
        // Only this client's session writes these: a load and a store, no locked RMW.
        self.xacts.store(self.xacts.load(Relaxed) + xacts, Relaxed);
        self.queries
            .store(self.queries.load(Relaxed) + queries, Relaxed);
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.xacts.load(Relaxed), self.queries.load(Relaxed))
    }

    /// Whether new transactions of this client are held (its database is paused).
    #[inline]
    pub fn held(&self) -> bool {
        self.db.as_ref().is_some_and(|d| d.paused())
    }
}

impl Drop for ClientInfo {
    fn drop(&mut self) {
        if let Some(counts) = self.admitted.take() {
            counts.leave(&self.database, &self.user);
        }
    }
}

/// Every logged-in client, by id (its cancel key's process id).
#[derive(Default)]
pub struct Registry {
    map: Mutex<BTreeMap<u32, Arc<ClientInfo>>>,
    next_id: AtomicU32,
}

impl Registry {
    /// Lists a client that logged in under a fresh id, one no logged-in client has (ids
    /// are positive 31-bit process ids in a BackendKeyData): `make` builds its record.
    pub fn register(&self, make: impl FnOnce(u32) -> ClientInfo) -> Arc<ClientInfo> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut id = self.next_id.fetch_add(1, Relaxed) & 0x7fff_ffff;
        while id == 0 || map.contains_key(&id) {
            id = self.next_id.fetch_add(1, Relaxed) & 0x7fff_ffff;
        }
        let info = Arc::new(make(id));
        debug_assert_eq!(info.id, id);
        map.insert(id, info.clone());
        info
    }

    /// Where a CancelRequest with this key goes: the server its client uses now, if the
    /// key is a logged-in client's and the client is on a server.
    pub fn cancel_target(&self, id: u32, secret: u32) -> Option<CancelTarget> {
        let info = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&id)?.clone()
        };
        if info.secret != secret {
            return None;
        }
        Some(info.server()?.cancel_target())
    }

    pub fn remove(&self, id: u32) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&id);
    }

    /// Every client, by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// How many clients match `f`, counted under the lock without cloning (PAUSE polls
    /// this while it waits).
    pub fn count(&self, f: impl Fn(&ClientInfo) -> bool) -> usize {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|c| f(c)).count()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `f` of client `id`, if it is logged in.
    pub fn with<R>(&self, id: u32, f: impl FnOnce(&ClientInfo) -> R) -> Option<R> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id).map(|c| f(c))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: u32) -> ClientInfo {
        ClientInfo::new(
            id,
            "u".into(),
            "app".into(),
            Some(0),
            ClientMeta::default(),
            None,
        )
    }

    fn link() -> Arc<ServerLink> {
        Arc::new(ServerLink {
            id: 1,
            backend_pid: 4242,
            backend_secret: 7,
            local_port: 1,
            addr: "127.0.0.1:5432".parse().unwrap(),
            unix: None,
            created: std::time::Instant::now(),
        })
    }

    #[test]
    fn a_cancel_key_leads_to_its_clients_server_while_it_is_listed() {
        let list = Registry::default();
        let a = list.register(client);
        let b = list.register(client);
        assert_ne!(a.id, b.id);
        assert!(a.id > 0 && a.id <= 0x7fff_ffff);
        // Not on a server: nothing to cancel.
        assert!(list.cancel_target(a.id, a.secret).is_none());
        a.set_server(link());
        assert_eq!(list.cancel_target(a.id, a.secret).unwrap().pid, 4242);
        assert!(list.cancel_target(a.id, a.secret.wrapping_add(1)).is_none());
        assert!(list.cancel_target(b.id, a.secret).is_none() || a.secret == b.secret);
        list.remove(a.id);
        assert!(list.cancel_target(a.id, a.secret).is_none());
    }

    #[test]
    fn addresses_keep_ip_and_port() {
        for a in ["10.1.2.3:5432", "[2001:db8::7]:6432", "[::1]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            let meta = ClientMeta::new(Some(a), None, "psql");
            assert_eq!(meta.addr(), Some(a));
            assert_eq!(meta.local_addr(), None);
            assert_eq!(meta.application_name(), "psql");
        }
        assert!(std::mem::size_of::<ClientMeta>() <= 56);
    }

    #[test]
    fn ids_skip_those_in_use() {
        let list = Registry::default();
        let first = list.register(client);
        list.next_id.store(first.id, Relaxed);
        let second = list.register(client);
        assert_ne!(second.id, first.id);
        // 0 is no process id: wrapping past the 31 bits skips it.
        list.next_id.store(0x8000_0000, Relaxed);
        assert_ne!(list.register(client).id, 0);
    }

    #[test]
    fn the_client_record_gives_its_place_back_when_it_goes() {
        let counts = Arc::new(ClientCounts::default());
        let ticket = counts.admit(&"app".into(), 1, &"u".into(), 0).unwrap();
        let list = Registry::default();
        let info = list.register(|id| client(id).admitted(ticket));
        assert_eq!(counts.on_db("app"), 1);
        assert!(counts.admit(&"app".into(), 1, &"u".into(), 0).is_err());
        list.remove(info.id);
        assert_eq!(
            counts.on_db("app"),
            1,
            "still held: the session has its record"
        );
        drop(info);
        assert_eq!(counts.on_db("app"), 0);
    }
}
