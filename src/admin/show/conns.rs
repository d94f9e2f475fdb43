//! SHOW CLIENTS, SHOW SERVERS, SHOW PINS and SHOW PREPARED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::super::table::{Table, V};
use super::super::view;
use super::{timestamp, wall, wall_us};
use crate::registry::clients::{ClientInfo, ClientState};
use crate::shared::Shared;

/// PgBouncer's socket columns (SHOW CLIENTS and SHOW SERVERS), then ours.
const SOCKET_COLUMNS: [&str; 18] = [
    "type",
    "user",
    "database",
    "state",
    "addr",
    "#port",
    "local_addr",
    "#local_port",
    "connect_time",
    "request_time",
    "#wait",
    "#wait_us",
    "#close_needed",
    "ptr",
    "link",
    "#remote_pid",
    "tls",
    "application_name",
];

fn ip(a: Option<SocketAddr>) -> V {
    V::from(a.map(|a| a.ip().to_string()))
}

fn port(a: Option<SocketAddr>) -> V {
    V::from(a.map(|a| a.port()))
}

/// SHOW CLIENTS: every logged-in client, admin console clients included.
///
/// - `state`: `active` (holding a server), `idle` (logged in, no server; PgBouncer calls
///   these `active` too) or `waiting` (for a server, or held by PAUSE).
/// - `ptr` is `c<id>` (the client's id, also its BackendKeyData pid); `link` is the
///   server it holds, `s<id>`, or empty.
/// - `request_time`: when its current wait or last query began; `wait`/`wait_us`: how
///   long it has been waiting, when waiting.
/// - `close_needed`, `remote_pid` 0; `tls` empty (TLS is not supported yet).
/// - Ours: `pins` (why it is pinned to its server), `xact_count`, `query_count`.
pub(super) fn clients(shared: &Shared) -> Table {
    let mut cols = SOCKET_COLUMNS.to_vec();
    cols.extend(["pins", "#xact_count", "#query_count"]);
    let mut t = Table::new(&cols);
    let now = view::now_us(shared);
    for c in shared.admin.clients.all() {
        let state = if c.is_console() {
            ClientState::Active
        } else {
            c.state()
        };
        let since = c.since_us();
        let wait = match (state, since) {
            (ClientState::Waiting, Some(s)) => now.saturating_sub(s),
            _ => 0,
        };
        let link = c.server().map(|s| format!("s{}", s.id)).unwrap_or_default();
        let (xacts, queries) = c.counts();
        let mut row = vec![
            V::from("C"),
            V::from(c.user.as_ref()),
            V::from(c.database.as_ref()),
            V::from(state.name()),
            ip(c.meta.addr()),
            port(c.meta.addr()),
            ip(c.meta.local_addr()),
            port(c.meta.local_addr()),
            V::from(timestamp(c.connected)),
            V::from(since.map(|s| timestamp(wall_us(shared, s)))),
            V::from(wait / 1_000_000),
            V::from(wait % 1_000_000),
            V::from(0u8),
            V::from(format!("c{}", c.id)),
            V::from(link),
            V::from(0u8),
            V::from(""),
            V::from(c.meta.application_name()),
        ];
        row.extend([V::from(pin_names(&c)), V::from(xacts), V::from(queries)]);
        t.row(row);
    }
    t
}

fn pin_names(c: &ClientInfo) -> String {
    c.pins()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// SHOW SERVERS: server connections held by clients (`active`) and idle in their pool
/// (`idle`). Connections being opened are only counted (SHOW POOLS `sv_login`): they have
/// no backend yet.
///
/// - `ptr` is `s<id>`; `link` the client holding it, `c<id>`; `remote_pid` the backend's
///   process id.
/// - `request_time`: for an idle connection when it was last returned, for an active one
///   when its client's current query began.
/// - `local_port` is pgsluice's port (the backend's `client_port` in pg_stat_activity);
///   `local_addr` is NULL for active connections (only the port is kept while a client
///   uses a connection, to keep that cheap).
/// - `wait`, `wait_us`, `close_needed` 0; `tls` empty; `application_name` empty (pgsluice
///   replays each client's own setting).
/// - Ours: `node` (0 = primary), `prepared` (statements pgsluice prepared on it; NULL
///   while a client holds it).
pub(super) fn servers(shared: &Shared) -> Table {
    let mut cols = SOCKET_COLUMNS.to_vec();
    cols.extend(["#node", "#prepared"]);
    let mut t = Table::new(&cols);
    for p in view::pools(shared) {
        for c in &p.clients {
            let Some(s) = c.server() else {
                continue;
            };
            let mut row = vec![
                V::from("S"),
                V::from(p.key.user.as_str()),
                V::from(p.key.database.as_str()),
                V::from("active"),
                ip(Some(s.addr)),
                port(Some(s.addr)),
                V::Null,
                V::from(s.local_port),
                V::from(timestamp(wall(shared, s.created))),
                V::from(c.since_us().map(|u| timestamp(wall_us(shared, u)))),
                V::from(0u8),
                V::from(0u8),
                V::from(0u8),
                V::from(format!("s{}", s.id)),
                V::from(format!("c{}", c.id)),
                V::from(s.backend_pid),
                V::from(""),
                V::from(""),
            ];
            row.extend([V::from(p.key.node), V::Null]);
            t.row(row);
        }
        let Some(pool) = &p.pool else {
            continue;
        };
        for s in pool.idle_servers() {
            let mut row = vec![
                V::from("S"),
                V::from(p.key.user.as_str()),
                V::from(p.key.database.as_str()),
                V::from("idle"),
                ip(Some(s.addr)),
                port(Some(s.addr)),
                ip(s.local_addr),
                port(s.local_addr),
                V::from(timestamp(wall(shared, s.created))),
                V::from(timestamp(wall(shared, s.last_used))),
                V::from(0u8),
                V::from(0u8),
                V::from(0u8),
                V::from(format!("s{}", s.id)),
                V::from(""),
                V::from(s.backend_pid),
                V::from(""),
                V::from(""),
            ];
            row.extend([V::from(p.key.node), V::from(s.prepared)]);
            t.row(row);
        }
    }
    t
}

/// SHOW PINS (ours): clients pinned to their server connection, and why. A pin is
/// state the server holds for the client that cannot be replayed elsewhere (LISTEN,
/// session advisory locks, temporary objects, WITH HOLD cursors, SQL PREPARE,
/// set_config, ...); it lasts until the client clears it or disconnects. Pins are
/// published at each ReadyForQuery.
pub(super) fn pins(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "user", "database", "client", "addr", "#port", "state", "server", "pins",
    ]);
    let all: Vec<Arc<ClientInfo>> = shared.admin.clients.all();
    for c in all.iter().filter(|c| !c.pins().is_empty()) {
        t.row(vec![
            V::from(c.user.as_ref()),
            V::from(c.database.as_ref()),
            V::from(format!("c{}", c.id)),
            ip(c.meta.addr()),
            port(c.meta.addr()),
            V::from(c.state().name()),
            V::from(c.server().map(|s| format!("s{}", s.id))),
            V::from(pin_names(c)),
        ]);
    }
    t
}

/// SHOW PREPARED (ours): the server-side statements pgsluice manages in transaction and
/// statement mode (`sluice_<id>`), each with the number of client Parse messages that
/// named it (`client_prepares`), how many of those pgsluice answered itself without a
/// round trip (`local_answers`), how many times it was prepared on a server connection
/// (`server_prepares`), and how many client sessions currently hold it (`holders`).
/// `client_prepares - server_prepares` is the reuse the mapping bought.
pub(super) fn prepared(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "name",
        "query",
        "#params",
        "validated",
        "#client_prepares",
        "#local_answers",
        "#server_prepares",
        "#holders",
    ]);
    for s in shared.statements.all() {
        // One reference is the registry's, one is ours here.
        let holders = Arc::strong_count(&s).saturating_sub(2);
        t.row(vec![
            V::from(s.name.as_str()),
            V::from(s.query()),
            V::from(s.param_count()),
            V::from(if s.validated.load(Relaxed) { "t" } else { "f" }),
            V::from(s.client_prepares.load(Relaxed)),
            V::from(s.local_answers.load(Relaxed)),
            V::from(s.server_prepares.load(Relaxed)),
            V::from(holders),
        ]);
    }
    t
}
