//! SHOW DATABASES, SHOW USERS, SHOW CONFIG, SHOW LISTS and SHOW VERSION.

use std::sync::atomic::Ordering::Relaxed;

use super::super::act::settable;
use super::super::table::{Table, V};
use crate::config::{self, Config};
use crate::shared::Shared;

fn mode_name(m: config::PoolMode) -> String {
    format!("{m:?}").to_ascii_lowercase()
}

/// SHOW DATABASES: one row per `[databases.NAME]`, describing its primary.
///
/// - `force_user`: NULL (pgsluice logs in to servers as the client's user).
/// - `reserve_pool`: `reserve_pool_size` (the database's, else the general one);
///   `max_connections`: `max_db_connections` (0: no limit); `pool_size`/`min_pool_size`/
///   `pool_mode`: the database's own setting, else the general one (`pool_mode` NULL when
///   inherited, as PgBouncer). `*` is the wildcard database.
/// - `current_connections`: server connections of all the database's pools.
/// - `paused`, `disabled`: PAUSE/KILL and DISABLE state.
pub(super) fn databases(shared: &Shared) -> Table {
    let snap = shared.snapshot.load();
    let c = &snap.config;
    let mut t = Table::new(&[
        "name",
        "host",
        "#port",
        "database",
        "force_user",
        "#pool_size",
        "#min_pool_size",
        "#reserve_pool",
        "pool_mode",
        "#max_connections",
        "#current_connections",
        "#paused",
        "#disabled",
    ]);
    let pools = shared.pools.all();
    for (name, db) in &c.databases {
        let (host, port) = config::parse_host_port(&db.primary).unwrap_or_default();
        let current: usize = pools
            .iter()
            .filter(|p| p.key.database == *name)
            .map(|p| p.snapshot().total)
            .sum();
        t.row(vec![
            V::from(name.as_str()),
            V::from(host),
            V::from(port),
            V::from(db.dbname.clone().unwrap_or_else(|| name.clone())),
            V::Null,
            V::from(c.pool_size(db, None)),
            V::from(db.min_pool_size.unwrap_or(c.general.min_pool_size)),
            V::from(c.reserve_pool_size(db, None)),
            V::from(db.pool_mode.map(mode_name)),
            V::from(c.max_db_connections(name)),
            V::from(current),
            V::from(shared.admin.is_paused(name)),
            V::from(shared.admin.is_disabled(name)),
        ]);
    }
    t
}

/// SHOW USERS: one row per `[[users]]`; `pool_mode` NULL when inherited.
pub(super) fn users(shared: &Shared) -> Table {
    let snap = shared.snapshot.load();
    let mut t = Table::new(&["name", "pool_mode"]);
    for u in &snap.config.users {
        t.row(vec![
            V::from(u.name.as_str()),
            V::from(u.pool_mode.map(mode_name)),
        ]);
    }
    t
}

/// Flattens a section into `(key, value)` text pairs, `prefix` before each key.
fn flatten(prefix: &str, value: toml::Value, out: &mut Vec<(String, String)>) {
    let toml::Value::Table(table) = value else {
        return;
    };
    for (k, v) in table {
        let text = match v {
            toml::Value::String(s) => s,
            toml::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        out.push((format!("{prefix}{k}"), text));
    }
}

/// Every setting of `[general]` (bare names, as PgBouncer's), `[auth]` (without the user
/// lists' secrets: there are none in it) and of our `[admin]`, `[metrics]` and `[tls]`
/// (file names, not their contents).
pub(crate) fn settings(c: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |prefix: &str, v: Result<toml::Value, toml::ser::Error>| {
        if let Ok(v) = v {
            flatten(prefix, v, &mut out);
        }
    };
    add("", toml::Value::try_from(&c.general));
    add("auth.", toml::Value::try_from(&c.auth));
    add("admin.", toml::Value::try_from(&c.admin));
    add("metrics.", toml::Value::try_from(&c.metrics));
    add("tls.", toml::Value::try_from(&c.tls));
    out
}

/// SHOW CONFIG: key, value, default, and whether it can change without a restart
/// (`changeable`: by SET, or for `auth.*` by editing the file and RELOAD).
pub(super) fn config(shared: &Shared) -> Table {
    let snap = shared.snapshot.load();
    let defaults: std::collections::HashMap<String, String> = settings(
        &Config::from_toml_with_env("", std::iter::empty()).unwrap_or_else(|_| snap.config.clone()),
    )
    .into_iter()
    .collect();
    let mut t = Table::new(&["key", "value", "default", "changeable"]);
    for (k, v) in settings(&snap.config) {
        let changeable = settable(&k) || k.starts_with("auth.");
        let default = defaults.get(&k).cloned();
        t.row(vec![
            V::from(k),
            V::from(v),
            V::from(default),
            V::from(if changeable { "yes" } else { "no" }),
        ]);
    }
    t
}

/// SHOW LISTS: sizes of pgsluice's lists, under PgBouncer's names.
///
/// - `free_clients`, `free_servers`: 0 (no object caches); `used_clients`: logged-in
///   clients; `login_clients`: connections still in startup or authentication;
///   `used_servers`: server connections, open or opening; `parked_clients` (pgsluice's
///   own): logged-in clients idle long enough to wait without a task (`park_idle_after`).
/// - `dns_*`: 0 (names are resolved by the system resolver when a connection is opened).
pub(super) fn lists(shared: &Shared) -> Table {
    let snap = shared.snapshot.load();
    let pools = shared.pools.all();
    let logged_in = shared.admin.clients.len();
    let connections = shared.clients.load(Relaxed);
    let servers: usize = pools.iter().map(|p| p.snapshot().total).sum();
    let mut t = Table::new(&["list", "#items"]);
    for (name, n) in [
        ("databases", snap.config.databases.len()),
        ("users", snap.config.users.len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", logged_in),
        ("login_clients", connections.saturating_sub(logged_in)),
        ("parked_clients", shared.parked.load(Relaxed)),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ] {
        t.row(vec![V::from(name), V::from(n)]);
    }
    t
}

/// SHOW VERSION.
pub(super) fn version() -> Table {
    let mut t = Table::new(&["version"]);
    t.row(vec![V::from(format!(
        "pgsluice {}",
        env!("CARGO_PKG_VERSION")
    ))]);
    t
}
