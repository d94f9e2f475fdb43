//! Validation of what serde cannot check (addresses, sizes, secrets, ranges), naming the
//! offending key.

use std::net::SocketAddr;

use super::{Config, ConfigError, invalid, is_admin_db, parse_host_port, tls};
use crate::auth::Secret;

impl Config {
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
            ("park_idle_after", g.park_idle_after),
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
}
