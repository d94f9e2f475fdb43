//! The `[pgbouncer]` section, key by key: what each becomes in pgsluice, or why it
//! cannot come along.

use super::out::{Out, Section};

/// How a value is carried over.
#[derive(Clone, Copy)]
enum Kind {
    /// A non-negative integer.
    Int,
    /// Seconds (PgBouncer allows fractions too).
    Secs,
    /// A string, as is.
    Text,
    /// A comma-separated list of names.
    List,
    /// PgBouncer's 0/1 (or true/false, on/off).
    Bool,
}

/// PgBouncer keys that map one to one: (PgBouncer key, section, pgsluice key, kind).
const SAME: &[(&str, Section, &str, Kind)] = &[
    (
        "max_client_conn",
        Section::General,
        "max_client_conn",
        Kind::Int,
    ),
    (
        "default_pool_size",
        Section::General,
        "default_pool_size",
        Kind::Int,
    ),
    (
        "min_pool_size",
        Section::General,
        "min_pool_size",
        Kind::Int,
    ),
    (
        "query_wait_timeout",
        Section::General,
        "query_wait_timeout",
        Kind::Secs,
    ),
    (
        "server_connect_timeout",
        Section::General,
        "server_connect_timeout",
        Kind::Secs,
    ),
    (
        "server_idle_timeout",
        Section::General,
        "server_idle_timeout",
        Kind::Secs,
    ),
    (
        "server_lifetime",
        Section::General,
        "server_lifetime",
        Kind::Secs,
    ),
    (
        "idle_transaction_timeout",
        Section::General,
        "idle_transaction_timeout",
        Kind::Secs,
    ),
    (
        "client_login_timeout",
        Section::General,
        "client_login_timeout",
        Kind::Secs,
    ),
    (
        "server_reset_query",
        Section::General,
        "server_reset_query",
        Kind::Text,
    ),
    ("stats_period", Section::Metrics, "stats_period", Kind::Secs),
    ("admin_users", Section::Auth, "admin_users", Kind::List),
    ("stats_users", Section::Auth, "stats_users", Kind::List),
    ("auth_user", Section::Auth, "auth_user", Kind::Text),
    ("auth_query", Section::Auth, "auth_query", Kind::Text),
    (
        "max_db_connections",
        Section::General,
        "max_db_connections",
        Kind::Int,
    ),
    (
        "max_user_connections",
        Section::General,
        "max_user_connections",
        Kind::Int,
    ),
    (
        "max_db_client_connections",
        Section::General,
        "max_db_client_connections",
        Kind::Int,
    ),
    (
        "max_user_client_connections",
        Section::General,
        "max_user_client_connections",
        Kind::Int,
    ),
    (
        "reserve_pool_size",
        Section::General,
        "reserve_pool_size",
        Kind::Int,
    ),
    (
        "reserve_pool_timeout",
        Section::General,
        "reserve_pool_timeout",
        Kind::Secs,
    ),
    (
        "query_timeout",
        Section::General,
        "query_timeout",
        Kind::Secs,
    ),
    (
        "transaction_timeout",
        Section::General,
        "transaction_timeout",
        Kind::Secs,
    ),
    (
        "client_idle_timeout",
        Section::General,
        "client_idle_timeout",
        Kind::Secs,
    ),
    (
        "server_check_query",
        Section::General,
        "server_check_query",
        Kind::Text,
    ),
    (
        "server_check_delay",
        Section::General,
        "server_check_delay",
        Kind::Secs,
    ),
    (
        "unix_socket_dir",
        Section::General,
        "unix_socket_dir",
        Kind::Text,
    ),
    (
        "unix_socket_mode",
        Section::General,
        "unix_socket_mode",
        Kind::Text,
    ),
    (
        "tcp_keepalive",
        Section::General,
        "tcp_keepalive",
        Kind::Bool,
    ),
    ("tcp_keepidle", Section::General, "tcp_keepidle", Kind::Int),
    (
        "tcp_keepintvl",
        Section::General,
        "tcp_keepintvl",
        Kind::Int,
    ),
    ("tcp_keepcnt", Section::General, "tcp_keepcnt", Kind::Int),
    (
        "client_tls_cert_file",
        Section::Tls,
        "cert_file",
        Kind::Text,
    ),
    ("client_tls_key_file", Section::Tls, "key_file", Kind::Text),
    ("client_tls_ca_file", Section::Tls, "ca_file", Kind::Text),
];

/// PgBouncer keys with no pgsluice counterpart, and why.
const NOT_CARRIED: &[(&str, &str)] = &[
    (
        "logfile",
        "pgsluice logs to stderr (the container runtime or systemd keeps it); PGSLUICE_LOG sets the filter",
    ),
    (
        "pidfile",
        "pgsluice does not daemonize; run it under systemd or a container runtime",
    ),
    ("syslog", "pgsluice logs to stderr"),
    ("syslog_ident", "pgsluice logs to stderr"),
    ("syslog_facility", "pgsluice logs to stderr"),
    (
        "log_connections",
        "pgsluice logs each login and disconnect at INFO (PGSLUICE_LOG=warn silences them)",
    ),
    (
        "log_disconnections",
        "pgsluice logs each login and disconnect at INFO (PGSLUICE_LOG=warn silences them)",
    ),
    (
        "log_pooler_errors",
        "errors sent to clients are always logged",
    ),
    (
        "log_stats",
        "pgsluice does not log statistics; SHOW STATS and /metrics have them",
    ),
    ("verbose", "set PGSLUICE_LOG=debug instead"),
    (
        "user",
        "pgsluice does not switch OS users; start it as the user it should run as",
    ),
    (
        "unix_socket_group",
        "pgsluice's socket keeps the group it is created with (unix_socket_mode sets its permissions)",
    ),
    (
        "so_reuseport",
        "one pgsluice process serves every core (general.workers)",
    ),
    ("peer_id", "no peering between pgsluice processes"),
    ("peers", "no peering between pgsluice processes"),
    (
        "auth_dbname",
        "pgsluice runs auth_query in the database the client asks for",
    ),
    (
        "auth_hba_file",
        "pgsluice has no hba file: one auth.type for every client",
    ),
    ("auth_ident_file", "pgsluice has no ident maps"),
    (
        "server_round_robin",
        "pgsluice reuses the connection its worker thread used last",
    ),
    (
        "server_reset_query_always",
        "in transaction mode pgsluice replays each client's settings instead; server_reset_query runs after session-mode and pinned clients",
    ),
    ("server_fast_close", "not carried over"),
    (
        "server_login_retry",
        "a failed server login is retried by the next client that needs one",
    ),
    ("suspend_timeout", "no online restart (SUSPEND) in pgsluice"),
    (
        "autodb_idle_timeout",
        "pgsluice drops a wildcard database's pools once no client uses them and their connections have closed (server_idle_timeout)",
    ),
    (
        "dns_max_ttl",
        "pgsluice resolves a server's host name at each connect",
    ),
    (
        "dns_nxdomain_ttl",
        "pgsluice resolves a server's host name at each connect",
    ),
    (
        "dns_zone_check_period",
        "pgsluice resolves a server's host name at each connect",
    ),
    ("resolv_conf", "pgsluice uses the system resolver"),
    ("pkt_buf", "pgsluice sizes its buffers itself"),
    ("sbuf_loopcnt", "pgsluice sizes its buffers itself"),
    ("listen_backlog", "the system default backlog is used"),
    ("tcp_defer_accept", "not carried over"),
    ("tcp_socket_buffer", "not carried over"),
    ("tcp_user_timeout", "not carried over"),
    ("disable_pqexec", "not carried over"),
    ("application_name_add_host", "not carried over"),
    ("conffile", "not carried over"),
    ("service_name", "pgsluice is not a Windows service"),
    ("job_name", "pgsluice is not a Windows service"),
    (
        "track_extra_parameters",
        "pgsluice tracks every parameter a client sets",
    ),
];

/// Carries one `[pgbouncer]` entry over into `out`, or notes why not. `listen_addr`,
/// `listen_port`, `auth_type`, `auth_file` and `pool_mode` are handled by the caller.
pub fn carry(out: &mut Out, key: &str, value: &str, line: usize) {
    let lower = key.to_ascii_lowercase();
    if let Some(&(_, section, to, kind)) = SAME.iter().find(|(k, ..)| *k == lower) {
        let parsed = match kind {
            Kind::Int => value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(toml::Value::Integer),
            Kind::Secs => value
                .parse::<f64>()
                .ok()
                .filter(|n| *n >= 0.0)
                .map(toml::Value::Float),
            Kind::Text => Some(toml::Value::String(value.to_string())),
            Kind::Bool => match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => Some(toml::Value::Boolean(true)),
                "0" | "false" | "off" | "no" => Some(toml::Value::Boolean(false)),
                _ => None,
            },
            Kind::List => Some(toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.to_string()))
                    .collect(),
            )),
        };
        match parsed {
            Some(v) => out.set(section, to, v, None),
            None => out.note(section, key, value, line, "not a valid value"),
        }
        return;
    }
    match lower.as_str() {
        "max_prepared_statements" => match value.parse::<i64>() {
            Ok(n) if n > 0 => out.set(
                Section::General,
                "max_prepared_statements",
                toml::Value::Integer(n),
                None,
            ),
            _ => out.note(
                Section::General,
                key,
                value,
                line,
                "PgBouncer's 0 turns prepared-statement tracking off; pgsluice maps named \
                 prepared statements by default (max_prepared_statements = 200), which is \
                 what transaction pooling needs",
            ),
        },
        "max_packet_size" => match value.parse::<i64>() {
            Ok(n) if n >= 1024 => out.set(
                Section::General,
                "max_message_size",
                toml::Value::Integer(n),
                Some(format!("max_packet_size = {value}")),
            ),
            _ => out.note(
                Section::General,
                key,
                value,
                line,
                "not a size pgsluice accepts (at least 1024)",
            ),
        },
        "ignore_startup_parameters" => out.note(
            Section::General,
            key,
            value,
            line,
            "not needed: pgsluice accepts every startup parameter (extra_float_digits, \
             search_path, options=-c ...) and replays it on each server connection",
        ),
        "client_tls_sslmode" => super::tls::client_mode(out, key, value, line),
        "server_tls_sslmode"
        | "server_tls_ca_file"
        | "server_tls_cert_file"
        | "server_tls_key_file" => super::tls::server(out, &lower, value, line),
        k if k.starts_with("client_tls_") || k.starts_with("server_tls_") => out.note(
            Section::Tls,
            key,
            value,
            line,
            "pgsluice's TLS (rustls) chooses protocol versions, ciphers and curves itself",
        ),
        k => {
            let reason = NOT_CARRIED
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, r)| *r)
                .unwrap_or("not a PgBouncer setting this import knows");
            out.note(Section::General, key, value, line, reason);
        }
    }
}
