//! The controls DBAs bring from PgBouncer: connection limits per database and user, the
//! reserve pool, session timeouts (global, per database, per user: the user's value wins,
//! then the database's, then `[general]`), the server check, Unix sockets, TCP keepalives
//! and the wildcard database `[databases."*"]`.

use std::borrow::Cow;
use std::time::Duration;

use super::{Config, ConfigError, Database, User, invalid, secs};

/// The key of the wildcard database: any name a client asks for that has no table of its
/// own is served by this entry's servers, under the name asked for.
pub const WILDCARD_DB: &str = "*";

/// Timeouts a client session enforces (`None`: off).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SessionTimeouts {
    pub query: Option<Duration>,
    pub transaction: Option<Duration>,
    pub client_idle: Option<Duration>,
    pub idle_transaction: Option<Duration>,
}

/// TCP keepalive settings for a socket; `None` when keepalives are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub count: Option<u32>,
}

impl Keepalive {
    /// Turns keepalives on for `socket` with these times (the OS default where `None`).
    pub fn apply(&self, socket: socket2::SockRef<'_>) -> std::io::Result<()> {
        let mut ka = socket2::TcpKeepalive::new();
        if let Some(t) = self.idle {
            ka = ka.with_time(t);
        }
        if let Some(t) = self.interval {
            ka = ka.with_interval(t);
        }
        if let Some(n) = self.count {
            ka = ka.with_retries(n);
        }
        socket.set_tcp_keepalive(&ka)
    }
}

fn nonzero_secs(v: u32) -> Option<Duration> {
    (v > 0).then(|| Duration::from_secs(u64::from(v)))
}

impl Config {
    /// The database entry for the name a client asked for: its own table, else the
    /// wildcard's with `dbname` set to the name asked for.
    pub fn database(&self, name: &str) -> Option<Cow<'_, Database>> {
        if let Some(db) = self.databases.get(name) {
            return Some(Cow::Borrowed(db));
        }
        if super::is_admin_db(name) {
            return None;
        }
        let wild = self.databases.get(WILDCARD_DB)?;
        let mut db = wild.clone();
        db.dbname = Some(name.to_string());
        Some(Cow::Owned(db))
    }

    /// The session timeouts of a (database, user).
    pub fn session_timeouts(&self, db: &Database, user: Option<&User>) -> SessionTimeouts {
        let g = &self.general;
        let pick = |u: Option<f64>, d: Option<f64>, general: f64| secs(u.or(d).unwrap_or(general));
        SessionTimeouts {
            query: pick(
                user.and_then(|u| u.query_timeout),
                db.query_timeout,
                g.query_timeout,
            ),
            transaction: pick(
                user.and_then(|u| u.transaction_timeout),
                db.transaction_timeout,
                g.transaction_timeout,
            ),
            client_idle: pick(
                user.and_then(|u| u.client_idle_timeout),
                db.client_idle_timeout,
                g.client_idle_timeout,
            ),
            idle_transaction: pick(
                user.and_then(|u| u.idle_transaction_timeout),
                db.idle_transaction_timeout,
                g.idle_transaction_timeout,
            ),
        }
    }

    /// Reserve connections of a (database, user)'s pools: the user's, the database's,
    /// then the general setting.
    pub fn reserve_pool_size(&self, db: &Database, user: Option<&User>) -> usize {
        user.and_then(|u| u.reserve_pool_size)
            .or(db.reserve_pool_size)
            .unwrap_or(self.general.reserve_pool_size)
    }

    /// Server connections allowed across the pools of database `name` (0: no limit).
    pub fn max_db_connections(&self, name: &str) -> usize {
        self.database(name)
            .and_then(|d| d.max_db_connections)
            .unwrap_or(self.general.max_db_connections)
    }

    /// Server connections allowed across the pools of user `name` (0: no limit).
    pub fn max_user_connections(&self, name: &str) -> usize {
        self.user(name)
            .and_then(|u| u.max_user_connections)
            .unwrap_or(self.general.max_user_connections)
    }

    /// Clients allowed on database `name` (0: no limit).
    pub fn max_db_client_connections(&self, name: &str) -> usize {
        self.database(name)
            .and_then(|d| d.max_db_client_connections)
            .unwrap_or(self.general.max_db_client_connections)
    }

    /// Clients allowed as user `name` (0: no limit).
    pub fn max_user_client_connections(&self, name: &str) -> usize {
        self.user(name)
            .and_then(|u| u.max_user_client_connections)
            .unwrap_or(self.general.max_user_client_connections)
    }

    /// TCP keepalive settings, `None` when `tcp_keepalive` is off.
    pub fn keepalive(&self) -> Option<Keepalive> {
        let g = &self.general;
        g.tcp_keepalive.then(|| Keepalive {
            idle: nonzero_secs(g.tcp_keepidle),
            interval: nonzero_secs(g.tcp_keepintvl),
            count: (g.tcp_keepcnt > 0).then_some(g.tcp_keepcnt),
        })
    }

    /// The server check: the query and how long a connection must have been idle first.
    pub fn server_check(&self) -> Option<(String, Duration)> {
        let g = &self.general;
        let q = g.server_check_query.trim();
        (!q.is_empty()).then(|| {
            (
                q.to_string(),
                Duration::from_secs_f64(g.server_check_delay.max(0.0)),
            )
        })
    }

    /// The Unix socket mode as a number.
    pub fn unix_socket_mode(&self) -> Option<u32> {
        u32::from_str_radix(self.general.unix_socket_mode.trim_start_matches("0o"), 8).ok()
    }

    pub(super) fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.unix_socket_mode().is_none_or(|m| m > 0o777) {
            return Err(invalid(
                "general.unix_socket_mode",
                "must be octal permissions such as \"0777\" or \"0770\"",
            ));
        }
        let g = &self.general;
        if !g.unix_socket_dir.is_empty() && !g.unix_socket_dir.starts_with('/') {
            return Err(invalid(
                "general.unix_socket_dir",
                "must be an absolute directory path",
            ));
        }
        let check = |key: String, v: Option<f64>| match v {
            Some(v) if !(0.0..=1e9).contains(&v) => {
                Err(invalid(key, "must be between 0 and 1e9 seconds"))
            }
            _ => Ok(()),
        };
        for (name, db) in &self.databases {
            for (k, v) in [
                ("query_timeout", db.query_timeout),
                ("transaction_timeout", db.transaction_timeout),
                ("client_idle_timeout", db.client_idle_timeout),
                ("idle_transaction_timeout", db.idle_transaction_timeout),
            ] {
                check(format!("databases.{name}.{k}"), v)?;
            }
            if name == WILDCARD_DB && !db.replicas.is_empty() {
                return Err(invalid(
                    format!("databases.\"{WILDCARD_DB}\".replicas"),
                    "the wildcard database serves from its primary only",
                ));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            for (k, v) in [
                ("query_timeout", u.query_timeout),
                ("transaction_timeout", u.transaction_timeout),
                ("client_idle_timeout", u.client_idle_timeout),
                ("idle_transaction_timeout", u.idle_transaction_timeout),
            ] {
                check(format!("users[{i}].{k}"), v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, std::iter::empty())
    }

    #[test]
    fn user_then_database_then_general() {
        let c = load(
            "[general]\nquery_timeout = 30\nclient_idle_timeout = 5\n\
             [[users]]\nname = \"u\"\nquery_timeout = 1\n\
             [databases.app]\nprimary = \"h:1\"\nquery_timeout = 2\ntransaction_timeout = 3\n",
        )
        .unwrap();
        let db = &c.databases["app"];
        let t = c.session_timeouts(db, c.user("u"));
        assert_eq!(t.query, Some(Duration::from_secs(1)));
        assert_eq!(t.transaction, Some(Duration::from_secs(3)));
        assert_eq!(t.client_idle, Some(Duration::from_secs(5)));
        assert_eq!(t.idle_transaction, None);
        let t = c.session_timeouts(db, None);
        assert_eq!(t.query, Some(Duration::from_secs(2)));
    }

    #[test]
    fn wildcard_serves_any_name() {
        let c = load("[databases.\"*\"]\nprimary = \"h:1\"\n[databases.app]\nprimary = \"p:2\"\n")
            .unwrap();
        assert_eq!(
            c.database("other").unwrap().dbname.as_deref(),
            Some("other")
        );
        assert_eq!(c.database("app").unwrap().primary, "p:2");
        assert!(c.database("pgbouncer").is_none());
        let err = load("[databases.\"*\"]\nprimary = \"h:1\"\nreplicas = [\"r:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replicas"), "{err}");
    }

    #[test]
    fn limits_and_keepalive() {
        let c = load(
            "[general]\nmax_db_connections = 4\ntcp_keepidle = 30\n\
             [[users]]\nname = \"u\"\nmax_user_connections = 2\n\
             [databases.app]\nprimary = \"/run/postgresql:5432\"\nmax_db_connections = 3\n",
        )
        .unwrap();
        assert_eq!(c.max_db_connections("app"), 3);
        assert_eq!(c.max_db_connections("nope"), 4);
        assert_eq!(c.max_user_connections("u"), 2);
        let ka = c.keepalive().unwrap();
        assert_eq!(ka.idle, Some(Duration::from_secs(30)));
        assert_eq!(ka.count, None);
        assert!(load("[general]\nunix_socket_mode = \"999\"\n").is_err());
        assert!(load("[general]\nunix_socket_dir = \"rel\"\n").is_err());
    }
}
