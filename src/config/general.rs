//! `[general]`: listening, pool mode, limits and timeouts, and their defaults.

use serde::{Deserialize, Serialize};

/// How long a client keeps a server connection.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// For the client's whole session; the server is reset (`server_reset_query`) before reuse.
    Session,
    /// For one transaction; session state is replayed on the next server.
    Transaction,
    /// For one statement; multi-statement transactions are refused.
    Statement,
}

/// `[general]`: listening, pool mode, limits and timeouts. Times are in seconds; 0 disables.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    pub listen_addr: String,
    /// Worker threads, each a single-threaded event loop; 0 means one per core.
    pub workers: usize,
    pub pool_mode: PoolMode,
    pub max_client_conn: usize,
    pub default_pool_size: usize,
    pub min_pool_size: usize,
    pub query_wait_timeout: f64,
    pub server_connect_timeout: f64,
    pub server_idle_timeout: f64,
    pub server_lifetime: f64,
    pub idle_transaction_timeout: f64,
    pub client_login_timeout: f64,
    pub shutdown_timeout: f64,
    /// Largest message a client may send, in bytes.
    pub max_message_size: usize,
    pub server_reset_query: String,
    /// Named prepared statements kept per server connection in transaction and statement
    /// mode (least recently used are closed); 0 = don't map them, pin the client instead.
    pub max_prepared_statements: usize,
    /// `text`, `json`, or `auto` (JSON when stderr is not a terminal, as in a container).
    pub log_format: String,
    /// Queries slower than this (waiting for a server plus running on it) are logged,
    /// normalised; 0 = off.
    pub slow_query_threshold: f64,
    /// Start even with no database configured (otherwise refused: every login would fail).
    pub allow_empty: bool,
    /// Server connections across all pools of one database (0 = no limit; see `limits.rs`).
    pub max_db_connections: usize,
    /// Server connections across all pools of one user (0 = no limit).
    pub max_user_connections: usize,
    /// Clients logged in to one database (0 = no limit); more are refused with 53300.
    pub max_db_client_connections: usize,
    /// Clients logged in as one user (0 = no limit); more are refused with 53300.
    pub max_user_client_connections: usize,
    /// Extra server connections a pool may open for a client that waited longer than
    /// `reserve_pool_timeout`.
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: f64,
    /// A query running longer than this is cancelled on the server (57014).
    pub query_timeout: f64,
    /// A transaction open longer than this is ended (25P04, the session closed).
    pub transaction_timeout: f64,
    /// A client idle (between transactions, sending nothing) this long is closed (57P05).
    pub client_idle_timeout: f64,
    /// A client idle between transactions this long gives up its task and its socket's
    /// place in the runtime's reactor, and waits with its session in its worker's lot
    /// until its next byte (see `client/lot.rs`); 0 = never.
    pub park_idle_after: f64,
    /// Run on an idle server connection unused for `server_check_delay` before it is
    /// handed out; empty = no check.
    pub server_check_query: String,
    pub server_check_delay: f64,
    /// A directory to listen in on a Unix-domain socket `.s.PGSQL.<port>` too (the port
    /// of `listen_addr`); empty = TCP only.
    pub unix_socket_dir: String,
    /// Permissions of the Unix socket, octal.
    pub unix_socket_mode: String,
    /// TCP keepalives on client and server sockets; the three times are seconds and
    /// counts, 0 = the operating system's default.
    pub tcp_keepalive: bool,
    pub tcp_keepidle: u32,
    pub tcp_keepintvl: u32,
    pub tcp_keepcnt: u32,
    /// Serve LISTEN/UNLISTEN in transaction and statement mode from one listening server
    /// connection per (database, user) instead of pinning the client (false: pin).
    pub listen_without_pinning: bool,
}

impl Default for General {
    fn default() -> Self {
        General {
            listen_addr: "127.0.0.1:6432".into(),
            workers: 1,
            pool_mode: PoolMode::Transaction,
            max_client_conn: 10_000,
            default_pool_size: 20,
            min_pool_size: 0,
            query_wait_timeout: 120.0,
            server_connect_timeout: 15.0,
            server_idle_timeout: 600.0,
            server_lifetime: 3600.0,
            idle_transaction_timeout: 0.0,
            client_login_timeout: 60.0,
            shutdown_timeout: 30.0,
            max_message_size: 256 * 1024 * 1024,
            server_reset_query: "DISCARD ALL".into(),
            max_prepared_statements: 200,
            log_format: "auto".into(),
            slow_query_threshold: 0.1,
            allow_empty: false,
            max_db_connections: 0,
            max_user_connections: 0,
            max_db_client_connections: 0,
            max_user_client_connections: 0,
            reserve_pool_size: 0,
            reserve_pool_timeout: 5.0,
            query_timeout: 0.0,
            transaction_timeout: 0.0,
            client_idle_timeout: 0.0,
            park_idle_after: 1.0,
            server_check_query: "select 1".into(),
            server_check_delay: 30.0,
            unix_socket_dir: String::new(),
            unix_socket_mode: "0777".into(),
            tcp_keepalive: true,
            tcp_keepidle: 0,
            tcp_keepintvl: 0,
            tcp_keepcnt: 0,
            listen_without_pinning: true,
        }
    }
}
