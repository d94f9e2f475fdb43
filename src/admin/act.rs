//! The console commands that change something: RELOAD, PAUSE, RESUME, DISABLE, ENABLE,
//! KILL, SHUTDOWN and SET.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::command::Command;
use crate::config::Config;
use crate::protocol::build;
use crate::registry::control::ShutdownRequest;
use crate::shared::{Phase, Shared, Snapshot};

type Outcome = Result<(), (String, String)>;

fn err(code: &str, message: impl Into<String>) -> (String, String) {
    (code.to_string(), message.into())
}

/// Settings SET changes on a running pgsluice. Pool sizes and server timeouts apply to
/// the pools at once; `max_client_conn`, `client_login_timeout`, `shutdown_timeout` and
/// `metrics.stats_period` to the next connection, drain or period; the rest
/// (`query_wait_timeout`, `idle_transaction_timeout`, `pool_mode`, `server_reset_query`,
/// `max_prepared_statements`, `max_message_size`, `slow_query_threshold`,
/// `metrics.enabled`) to clients that log in afterwards. Of PgBouncer's DBA controls,
/// `max_db_connections`, `max_user_connections`, the reserve pool and the server check
/// apply to the pools at once; the client limits to the next login; `query_timeout`,
/// `transaction_timeout` and `client_idle_timeout` to clients that log in afterwards;
/// the keepalives to new connections; `park_idle_after` to clients that log in afterwards. RELOAD returns every setting to the file's value.
pub const SETTABLE: &[&str] = &[
    "pool_mode",
    "max_client_conn",
    "default_pool_size",
    "min_pool_size",
    "query_wait_timeout",
    "server_connect_timeout",
    "server_idle_timeout",
    "server_lifetime",
    "idle_transaction_timeout",
    "client_login_timeout",
    "shutdown_timeout",
    "max_message_size",
    "server_reset_query",
    "max_prepared_statements",
    "slow_query_threshold",
    "metrics.enabled",
    "metrics.stats_period",
    "max_db_connections",
    "max_user_connections",
    "max_db_client_connections",
    "max_user_client_connections",
    "reserve_pool_size",
    "reserve_pool_timeout",
    "query_timeout",
    "transaction_timeout",
    "client_idle_timeout",
    "park_idle_after",
    "server_check_query",
    "server_check_delay",
    "tcp_keepalive",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_keepcnt",
];

/// Whether SET can change `key` (`general.` prefix optional).
pub fn settable(key: &str) -> bool {
    SETTABLE.contains(&key.strip_prefix("general.").unwrap_or(key))
}

/// Runs a command that is not SHOW, writing its CommandComplete on success.
pub(super) async fn run(shared: &Arc<Shared>, cmd: Command, out: &mut BytesMut) -> Outcome {
    let tag = cmd.name();
    match cmd {
        Command::Show(_) => unreachable!("SHOW is answered by show.rs"),
        Command::Reload => shared.reload().map_err(|e| {
            err(
                "F0000",
                format!("reload failed, the running configuration is kept: {e}"),
            )
        })?,
        Command::Pause(db) => pause(shared, db.as_deref()).await?,
        Command::Resume(db) => {
            if let Some(d) = &db {
                known_db(shared, d)?;
            }
            if !shared.admin.resume(db.as_deref()) {
                return Err(match db {
                    Some(d) => err("55000", format!("database \"{d}\" is not paused")),
                    None => err("55000", "nothing is paused"),
                });
            }
        }
        Command::Disable(db) => {
            known_db(shared, &db)?;
            shared.admin.set_disabled(&db, true);
        }
        Command::Enable(db) => {
            known_db(shared, &db)?;
            shared.admin.set_disabled(&db, false);
        }
        Command::Kill(db) => kill(shared, &db)?,
        Command::Shutdown { wait_for_clients } => {
            shared.admin.request_shutdown(if wait_for_clients {
                ShutdownRequest::Drain
            } else {
                ShutdownRequest::Now
            });
        }
        Command::Set { key, value } => set(shared, &key, &value)?,
    }
    build::command_complete(out, tag);
    Ok(())
}

/// A database name the commands accept: configured, not the console's own.
fn known_db(shared: &Shared, db: &str) -> Outcome {
    if super::is_admin_db(db) {
        return Err(err(
            "0A000",
            format!("the admin console database \"{db}\" cannot be paused, disabled or killed"),
        ));
    }
    if !shared.snapshot.load().config.databases.contains_key(db) {
        return Err(err("3D000", format!("no such database: {db}")));
    }
    Ok(())
}

/// PAUSE: new transactions are held; returns once no client of `db` (or of any
/// database) holds a server, after closing the idle server connections (so the database
/// can be restarted), as PgBouncer does.
async fn pause(shared: &Shared, db: Option<&str>) -> Outcome {
    if let Some(d) = db {
        known_db(shared, d)?;
    }
    shared.admin.pause(db);
    let phase = shared.drain.subscribe();
    while shared.admin.active_clients(db) > 0 {
        if *phase.borrow() != Phase::Running {
            return Err(err("57P01", "pgsluice is shutting down"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    close_idle(shared, db);
    Ok(())
}

fn close_idle(shared: &Shared, db: Option<&str>) -> usize {
    shared
        .pools
        .all()
        .iter()
        .filter(|p| db.is_none_or(|d| p.key.database == d))
        .map(|p| p.close_idle())
        .sum()
}

/// KILL: closes the clients of `db` now (mid-transaction or not) and its idle servers;
/// the database stays paused until RESUME, as in PgBouncer.
fn kill(shared: &Shared, db: &str) -> Outcome {
    known_db(shared, db)?;
    let clients = shared.admin.kill_clients(db);
    shared.admin.pause(Some(db));
    // Wake every session: the killed ones see their flag and close.
    shared.sessions.wake_all();
    let servers = close_idle(shared, Some(db));
    tracing::warn!(
        database = db,
        clients,
        idle_servers = servers,
        "KILL: closing the database's clients; it stays paused until RESUME"
    );
    Ok(())
}

/// SET key = value: a new configuration with one setting changed, validated and swapped
/// in like a reload.
fn set(shared: &Shared, key: &str, value: &str) -> Outcome {
    if !settable(key) {
        let hint = if key.starts_with("auth.") || key.contains('.') && !key.starts_with("metrics.")
        {
            "; change it in the configuration file and RELOAD"
        } else {
            "; it needs a restart or is not a setting (SHOW CONFIG lists them)"
        };
        return Err(err(
            "55P02",
            format!("parameter \"{key}\" cannot be changed with SET{hint}"),
        ));
    }
    let mut config: Config = shared.snapshot.load().config.clone();
    let bad = |e: String| err("22023", format!("invalid value for \"{key}\": {e}"));
    match key.strip_prefix("metrics.") {
        Some(k) => config.metrics = with(&config.metrics, k, value).map_err(bad)?,
        None => {
            let k = key.strip_prefix("general.").unwrap_or(key);
            config.general = with(&config.general, k, value).map_err(bad)?;
        }
    }
    config
        .validate()
        .map_err(|e| err("22023", format!("invalid value for \"{key}\": {e}")))?;
    let tls = shared.snapshot.load().tls.clone();
    shared.pools.reconfigure(&config, tls.clone());
    shared.snapshot.store(Arc::new(Snapshot::new(config, tls)));
    tracing::info!("SET {key} = {value}");
    Ok(())
}

/// `section` with `key` set to `value`: a string where the setting is a string, else
/// read as TOML (`5`, `1.5`, `true`).
fn with<T>(section: &T, key: &str, value: &str) -> Result<T, String>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let toml::Value::Table(mut table) =
        toml::Value::try_from(section).map_err(|e| e.to_string())?
    else {
        return Err("not a section".into());
    };
    let new = match table.get(key) {
        Some(toml::Value::String(_)) => toml::Value::String(value.to_string()),
        Some(_) => toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| format!("{value:?} is not a number or boolean"))?,
        None => return Err("no such setting".into()),
    };
    table.insert(key.to_string(), new);
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_string())
}
