//! The TOML configuration: types with their defaults, loading with environment overrides,
//! and validation that names the offending key.

mod auth;
mod endpoints;
mod env;
mod files;
mod limits;
mod observe;
mod print;
mod secret;
mod startup;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Secret;
pub use auth::{Auth, AuthType, DEFAULT_AUTH_QUERY};
pub use env::SECTIONS;
pub use limits::{Keepalive, SessionTimeouts, WILDCARD_DB};
pub use observe::{Admin, Metrics};
pub use print::MASK;
pub use secret::read_secret_file;
pub use tls::{ClientCert, ClientTlsMode, NodeTls, ServerTlsMode, ServerTlsSettings, Tls};

/// Why a configuration could not be used. Each variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

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

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub general: General,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub databases: BTreeMap<String, Database>,
    #[serde(default)]
    pub routing: Routing,
    /// `[admin]`: HTTP endpoints (see `observe.rs`).
    #[serde(default)]
    pub admin: Admin,
    /// `[metrics]`: statistics (see `observe.rs`).
    #[serde(default)]
    pub metrics: Metrics,
    /// `PGSLUICE_*` variables that were not configuration (see `env.rs`), for a debug line
    /// once logging is up.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// `[tls]`: client-facing TLS (see `tls.rs`).
    #[serde(default)]
    pub tls: Tls,
    /// `[[access]]`: access rules, first match wins (see `crate::access`).
    #[serde(default)]
    pub access: Vec<crate::access::Rule>,
    /// Problems worth a WARN that do not stop the config from loading.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Which node serves a read when several may.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    /// In turn, each node as often as its weight says.
    RoundRobin,
    /// At random, weighted.
    Random,
    /// The node with the fewest clients on it now, relative to its weight.
    LeastOutstanding,
}

/// Whether the primary serves reads too.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReads {
    /// Reads go to replicas only; with none usable, a read fails.
    Never,
    /// Reads go to the primary when no replica is usable.
    Fallback,
    /// The primary is one of the read nodes, by its weight.
    Always,
}

/// Read-your-writes guarantee for sessions that wrote.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWrites {
    /// No guarantee: a read may go to any replica in the read set.
    Off,
    /// After a write, read only from nodes that replayed the session's last commit.
    Lsn,
}

/// `[routing]`: read/write split, load balancing, lag limits and read-your-writes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Routing {
    /// Send provably read-only statements to replicas (transaction and statement mode).
    pub read_write_split: bool,
    pub load_balance: LoadBalance,
    pub primary_reads: PrimaryReads,
    pub read_your_writes: ReadYourWrites,
    /// Send the client a ParameterStatus `pgsluice.write_lsn` after each committed write.
    pub report_write_lsn: bool,
    /// Seconds between checks of each node.
    pub lag_check_interval: f64,
    /// A replica further behind than this many seconds leaves the read set; 0 = no limit.
    pub max_replica_lag: f64,
    /// A replica further behind than this many bytes of WAL leaves the read set; 0 = no limit.
    pub max_replica_lag_bytes: u64,
    /// Consecutive good checks before a replica that left the read set returns.
    pub rejoin_after_checks: u32,
    /// Functions (besides the built-in allowlist) known not to write, e.g. `"my_report"`
    /// or `"myschema.my_report"`.
    pub read_only_functions: Vec<String>,
    /// Retry on the primary a statement a replica refused with SQLSTATE 25006.
    pub retry_read_only_errors: bool,
    /// Who the node monitor connects as; defaults to the first `[[users]]` entry.
    pub monitor_user: Option<String>,
    /// After a write, ask a replica that keeps up for its replay LSN on the connection
    /// being checked out, instead of sending the session's reads to the primary until
    /// the monitor's next check shows the write replayed.
    pub ryw_probe: bool,
    /// Seconds such a probe may wait, on the replica, for the write to be replayed before
    /// the read goes to the primary; 0 = ask once.
    pub ryw_max_wait: f64,
    /// Look up the volatility of functions not on the allowlist in the catalog:
    /// IMMUTABLE and STABLE ones may run on a replica.
    pub function_volatility: bool,
    /// Seconds between reads of the function catalog (also read on RELOAD, and soon after
    /// a query names a function it does not have).
    pub function_refresh_interval: f64,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            read_write_split: true,
            load_balance: LoadBalance::RoundRobin,
            primary_reads: PrimaryReads::Fallback,
            read_your_writes: ReadYourWrites::Lsn,
            report_write_lsn: false,
            lag_check_interval: 0.1,
            max_replica_lag: 10.0,
            max_replica_lag_bytes: 256 * 1024 * 1024,
            rejoin_after_checks: 3,
            read_only_functions: Vec::new(),
            retry_read_only_errors: true,
            monitor_user: None,
            ryw_probe: true,
            ryw_max_wait: 0.005,
            function_volatility: true,
            function_refresh_interval: 60.0,
        }
    }
}

/// A replica: `"host:port"`, or `{ addr = "host:port", weight = 2 }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NodeSpec {
    Addr(String),
    Weighted {
        addr: String,
        #[serde(default = "one")]
        weight: u32,
    },
}

fn one() -> u32 {
    1
}

impl NodeSpec {
    pub fn addr(&self) -> &str {
        match self {
            NodeSpec::Addr(a) | NodeSpec::Weighted { addr: a, .. } => a,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            NodeSpec::Addr(_) => 1,
            NodeSpec::Weighted { weight, .. } => *weight,
        }
    }
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

/// `[[users]]`: one user clients may log in as.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Plaintext, `md5...` or `SCRAM-SHA-256$...`.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding `password` (e.g. a mounted Kubernetes Secret); read at load.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Password for the server, when `password` is a verifier (or differs).
    #[serde(default)]
    pub server_password: Option<String>,
    /// A file holding `server_password`; read at load.
    #[serde(default)]
    pub server_password_file: Option<PathBuf>,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Server connections across all pools of this user (overrides the general one).
    #[serde(default)]
    pub max_user_connections: Option<usize>,
    #[serde(default)]
    pub max_user_client_connections: Option<usize>,
    #[serde(default)]
    pub reserve_pool_size: Option<usize>,
    #[serde(default)]
    pub query_timeout: Option<f64>,
    #[serde(default)]
    pub transaction_timeout: Option<f64>,
    #[serde(default)]
    pub client_idle_timeout: Option<f64>,
    #[serde(default)]
    pub idle_transaction_timeout: Option<f64>,
}

/// `[databases.NAME]`: a database clients may name, and the nodes that serve it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database name on the server; defaults to the key.
    #[serde(default)]
    pub dbname: Option<String>,
    /// `host:port` of the primary (for a read-only endpoint, copied from its database).
    #[serde(default)]
    pub primary: String,
    /// A read-only endpoint: the replicas of the named database serve every session (see
    /// `endpoints.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_of: Option<String>,
    /// For a read-only endpoint: the primary serves its sessions (read-only) when no
    /// replica can.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_fallback: bool,
    #[serde(default)]
    pub replicas: Vec<NodeSpec>,
    /// The primary's share of reads when `routing.primary_reads = "always"`.
    #[serde(default = "one")]
    pub primary_weight: u32,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub min_pool_size: Option<usize>,
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// TLS to this database's servers (see `tls.rs`); default "prefer".
    #[serde(default)]
    pub server_tls: Option<ServerTlsMode>,
    #[serde(default)]
    pub server_ca_file: Option<String>,
    /// Client certificate and key pgsluice presents to servers that ask for one.
    #[serde(default)]
    pub server_cert_file: Option<String>,
    #[serde(default)]
    pub server_key_file: Option<String>,
    /// Per-node overrides of the four keys above, by node address (`"host:port"`).
    #[serde(default)]
    pub node_tls: BTreeMap<String, NodeTls>,
    /// Server connections across all pools of this database (overrides the general one).
    #[serde(default)]
    pub max_db_connections: Option<usize>,
    #[serde(default)]
    pub max_db_client_connections: Option<usize>,
    #[serde(default)]
    pub reserve_pool_size: Option<usize>,
    #[serde(default)]
    pub query_timeout: Option<f64>,
    #[serde(default)]
    pub transaction_timeout: Option<f64>,
    #[serde(default)]
    pub client_idle_timeout: Option<f64>,
    #[serde(default)]
    pub idle_transaction_timeout: Option<f64>,
}

impl Database {
    /// The server TLS settings of the node at `addr`.
    pub fn server_tls_for(&self, addr: &str) -> ServerTlsSettings {
        tls::resolve(self, addr)
    }
}

/// Seconds from the config as a `Duration`; `None` when disabled (0).
pub fn secs(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| Duration::from_secs_f64(value))
}

impl Config {
    /// Reads `path` (if any), applies `PGSLUICE_*` environment overrides, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        let vars = std::env::vars().filter(|(k, _)| k.starts_with(env::PREFIX));
        let mut config = Config::from_toml_with_env(&text, vars)?;
        config
            .warnings
            .extend(path.and_then(files::permission_warning));
        Ok(config)
    }

    /// Parses TOML text, applies the given `PGSLUICE_*` variables, and validates.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut ignored = Vec::new();
        for (var, val) in vars {
            if env::apply(&mut value, &var, &val)? == env::Applied::Ignored {
                tracing::debug!("ignoring {var}: not a PGSLUICE_<SECTION>__<KEY> setting");
                ignored.push(var);
            }
        }
        let mut config: Config = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.ignored_env = ignored;
        secret::resolve_user_files(&mut config.users)?;
        endpoints::resolve(&mut config.databases)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: addresses, sizes, secrets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.general;
        g.listen_addr
            .parse::<SocketAddr>()
            .map_err(|e| invalid("general.listen_addr", e.to_string()))?;
        if g.default_pool_size == 0 {
            return Err(invalid("general.default_pool_size", "must be at least 1"));
        }
        if g.max_client_conn == 0 {
            return Err(invalid("general.max_client_conn", "must be at least 1"));
        }
        if g.max_message_size < 1024 {
            return Err(invalid("general.max_message_size", "must be at least 1024"));
        }
        if !["text", "json", "auto"].contains(&g.log_format.as_str()) {
            return Err(invalid(
                "general.log_format",
                "must be \"text\", \"json\" or \"auto\"",
            ));
        }
        for (key, v) in [
            ("query_wait_timeout", g.query_wait_timeout),
            ("server_connect_timeout", g.server_connect_timeout),
            ("server_idle_timeout", g.server_idle_timeout),
            ("server_lifetime", g.server_lifetime),
            ("idle_transaction_timeout", g.idle_transaction_timeout),
            ("client_login_timeout", g.client_login_timeout),
            ("shutdown_timeout", g.shutdown_timeout),
            ("slow_query_threshold", g.slow_query_threshold),
            ("reserve_pool_timeout", g.reserve_pool_timeout),
            ("query_timeout", g.query_timeout),
            ("transaction_timeout", g.transaction_timeout),
            ("client_idle_timeout", g.client_idle_timeout),
            ("server_check_delay", g.server_check_delay),
        ] {
            if !(0.0..=1e9).contains(&v) {
                return Err(invalid(
                    format!("general.{key}"),
                    "must be between 0 and 1e9 seconds",
                ));
            }
        }
        self.validate_users()?;
        self.validate_databases()?;
        self.validate_limits()?;
        self.validate_routing()?;
        self.validate_auth()?;
        self.tls.validate()?;
        self.admin.validate()?;
        self.metrics.validate()
    }

    fn validate_routing(&self) -> Result<(), ConfigError> {
        let r = &self.routing;
        if !(0.001..=3600.0).contains(&r.lag_check_interval) {
            return Err(invalid(
                "routing.lag_check_interval",
                "must be between 0.001 and 3600 seconds",
            ));
        }
        if !(0.0..=1e9).contains(&r.max_replica_lag) {
            return Err(invalid(
                "routing.max_replica_lag",
                "must be between 0 and 1e9 seconds",
            ));
        }
        if !(0.0..=10.0).contains(&r.ryw_max_wait) {
            return Err(invalid(
                "routing.ryw_max_wait",
                "must be between 0 and 10 seconds",
            ));
        }
        if !(1.0..=86400.0).contains(&r.function_refresh_interval) {
            return Err(invalid(
                "routing.function_refresh_interval",
                "must be between 1 and 86400 seconds",
            ));
        }
        if let Some(u) = &r.monitor_user
            && self.user(u).is_none()
        {
            return Err(invalid(
                "routing.monitor_user",
                format!("no [[users]] entry named {u:?}"),
            ));
        }
        Ok(())
    }

    /// Who the node monitor connects as.
    pub fn monitor_user(&self) -> Option<&str> {
        self.routing
            .monitor_user
            .as_deref()
            .or_else(|| self.users.first().map(|u| u.name.as_str()))
    }

    fn validate_users(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.name.is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            if !seen.insert(&u.name) {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("duplicate user {:?}", u.name),
                ));
            }
            if let Some(p) = &u.password {
                Secret::parse(p).map_err(|e| invalid(format!("{key}.password"), e.to_string()))?;
            }
            if u.pool_size == Some(0) {
                return Err(invalid(format!("{key}.pool_size"), "must be at least 1"));
            }
        }
        Ok(())
    }

    fn validate_databases(&self) -> Result<(), ConfigError> {
        for (name, db) in &self.databases {
            let key = format!("databases.{name}");
            if is_admin_db(name) {
                return Err(invalid(key, "this name is reserved for the admin console"));
            }
            parse_host_port(&db.primary).map_err(|r| invalid(format!("{key}.primary"), r))?;
            for (i, r) in db.replicas.iter().enumerate() {
                parse_host_port(r.addr())
                    .map_err(|e| invalid(format!("{key}.replicas[{i}]"), e))?;
                if r.weight() == 0 {
                    return Err(invalid(
                        format!("{key}.replicas[{i}].weight"),
                        "must be at least 1",
                    ));
                }
            }
            if db.pool_size == Some(0) {
                return Err(invalid(format!("{key}.pool_size"), "must be at least 1"));
            }
            tls::validate_db(name, db)?;
        }
        Ok(())
    }

    /// The configured user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Pool mode for a (database, user): user override, then database, then general.
    pub fn pool_mode(&self, db: &Database, user: Option<&User>) -> PoolMode {
        user.and_then(|u| u.pool_mode)
            .or(db.pool_mode)
            .unwrap_or(self.general.pool_mode)
    }

    /// Pool size for a (database, user): user override, then database, then general.
    pub fn pool_size(&self, db: &Database, user: Option<&User>) -> usize {
        user.and_then(|u| u.pool_size)
            .or(db.pool_size)
            .unwrap_or(self.general.default_pool_size)
    }
}

/// Splits `host:port`, checking the port.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok((host.to_string(), port))
}

/// Names clients use to reach the admin console (`pgbouncer` for existing tools).
pub const ADMIN_DATABASES: &[&str] = &["pgsluice", "pgbouncer"];

/// Whether `name` is the admin console's virtual database rather than a configured one.
pub fn is_admin_db(name: &str) -> bool {
    ADMIN_DATABASES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml_with_env(text, vars)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.general.pool_mode, PoolMode::Transaction);
        assert_eq!(c.general.default_pool_size, 20);
    }

    #[test]
    fn full_example_parses() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pooler.toml.example"))
                .unwrap();
        let c = load(&text, &[]).unwrap();
        assert!(!c.databases.is_empty());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[general]\npool_sise = 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool_sise"), "{err}");
    }

    #[test]
    fn bad_value_names_key() {
        let err = load("[general]\nlisten_addr = \"nope\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("general.listen_addr"), "{err}");
        let err = load("[databases.x]\nprimary = \"h\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("databases.x.primary"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let c = load(
            "[general]\npool_mode = \"session\"\n",
            &[
                ("PGSLUICE_GENERAL__POOL_MODE", "statement"),
                ("PGSLUICE_GENERAL__DEFAULT_POOL_SIZE", "7"),
                ("PGSLUICE_DATABASES__APP__PRIMARY", "127.0.0.1:5432"),
                ("PGSLUICE_DATABASES__APP__REPLICAS", "[\"127.0.0.1:5433\"]"),
            ],
        )
        .unwrap();
        assert_eq!(c.general.pool_mode, PoolMode::Statement);
        assert_eq!(c.general.default_pool_size, 7);
        assert_eq!(
            c.databases["app"].replicas,
            vec![NodeSpec::Addr("127.0.0.1:5433".into())]
        );
    }

    #[test]
    fn sections_list_matches_the_struct() {
        // serde names every field it expects when it meets an unknown one.
        let err = load("[no_such_section]\n", &[]).unwrap_err().to_string();
        for s in SECTIONS {
            assert!(
                err.contains(&format!("`{s}`")),
                "{s} is not a section: {err}"
            );
        }
        let expected = err.matches('`').count() / 2 - 1;
        assert_eq!(
            SECTIONS.len(),
            expected,
            "a section is missing from SECTIONS: {err}"
        );
    }

    #[test]
    fn passwords_from_files() {
        let dir = std::env::temp_dir().join(format!("pgsluice-pwfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from_file\n").unwrap();
        std::fs::write(dir.join("srv"), "server_pw").unwrap();
        let pw = dir.join("pw").display().to_string();
        let srv = dir.join("srv").display().to_string();
        let c = load(
            "[[users]]\nname = \"app\"\n",
            &[
                ("PGSLUICE_USERS__APP__PASSWORD_FILE", &pw),
                ("PGSLUICE_USERS__APP__SERVER_PASSWORD_FILE", &srv),
            ],
        )
        .unwrap();
        assert_eq!(c.users[0].password.as_deref(), Some("from_file"));
        assert_eq!(c.users[0].server_password.as_deref(), Some("server_pw"));
        let err = load(
            &format!("[[users]]\nname = \"app\"\npassword = \"x\"\npassword_file = {pw:?}\n"),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("users[0].password_file"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_and_access_keys_are_validated_by_name() {
        let db = "[databases.app]\nprimary = \"h:1\"\n";
        let cases = [
            ("[tls]\nclient_mode = \"require\"\n", "tls.cert_file"),
            (
                "[tls]\nclient_mode = \"allow\"\ncert_file = \"/nonexistent.crt\"\nkey_file = \"k\"\n",
                "tls.cert_file",
            ),
            ("[tls]\nclient_cert = \"verify-ca\"\n", "tls.ca_file"),
            ("[tls]\nclient_mode = \"sometimes\"\n", "client_mode"),
            (
                "[[access]]\naddress = \"10.0.0.0/99\"\nmethod = \"trust\"\n",
                "access[0].address",
            ),
            ("[[access]]\nmethod = \"cert\"\n", "access[0].method"),
            ("[auth]\nauth_user = \"ghost\"\n", "auth.auth_user"),
            ("[auth]\nauth_cache_ttl = -1\n", "auth.auth_cache_ttl"),
            (
                "[[users]]\nname = \"u\"\npassword = \"x\"\npassword_file = \"/etc/hostname\"\n",
                "users[0].password_file",
            ),
            (
                "[[users]]\nname = \"u\"\npassword_file = \"/nonexistent\"\n",
                "users[0].password_file",
            ),
        ];
        for (text, key) in cases {
            // Files are read with the TLS material, after the config itself loaded.
            let err = match load(&format!("{text}{db}"), &[]) {
                Err(e) => e.to_string(),
                Ok(c) => match crate::shared::load_tls(&c) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!("{text}: accepted"),
                },
            };
            assert!(err.contains(key), "{text}: {err}");
        }
        let err = load(&format!("{db}server_tls = \"verify-full\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("databases.app.server_ca_file"), "{err}");
        let err = load(
            &format!("{db}[databases.app.node_tls.\"x:1\"]\nserver_tls = \"require\"\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("node_tls"), "{err}");
    }

    #[test]
    fn server_tls_defaults_and_node_overrides() {
        let c = load(
            "[databases.app]\nprimary = \"p:1\"\nreplicas = [\"r:2\"]\nserver_tls = \"require\"\n\
             [databases.app.node_tls.\"r:2\"]\nserver_tls = \"disable\"\n\
             [databases.other]\nprimary = \"p:1\"\n",
            &[],
        )
        .unwrap();
        let app = &c.databases["app"];
        assert_eq!(app.server_tls_for("p:1").mode, ServerTlsMode::Require);
        assert_eq!(app.server_tls_for("r:2").mode, ServerTlsMode::Disable);
        assert_eq!(
            c.databases["other"].server_tls_for("p:1").mode,
            ServerTlsMode::Prefer
        );
        let built = crate::tls::Built::load(&c).unwrap();
        assert_eq!(built.connectors.len(), 3);
        assert!(built.acceptor.is_none());
        assert_eq!(c.auth.auth_query, DEFAULT_AUTH_QUERY);
    }

    #[test]
    fn bad_env_names_variable() {
        let err = load("", &[("PGSLUICE_GENERAL__DEFAULT_POOL_SIZE", "many")]).unwrap_err();
        assert!(err.to_string().contains("default_pool_size"), "{err}");
    }
}

#[cfg(test)]
mod fuzz_tests;
