//! Logging a client in: the startup parameters, the access rules, authentication, the
//! client limits, and building its session (core and driver) with the greeting sent.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use bytes::BytesMut;

use super::driver::Driver;
use super::{ClientError, auth_query, cancel, core, negotiate, startup};
use crate::access;
use crate::auth::Secret;
use crate::auth::passthrough::PassThrough;
use crate::config::{self, AuthType, ClientCert, ClientTlsMode, PoolMode};
use crate::net::ClientStream;
use crate::pool::{Pool, PoolKey};
use crate::protocol::greeting::ServerParams;
use crate::protocol::{build, startup::parse_options};
use crate::registry::clients::ClientInfo;
use crate::router::route::Force;
use crate::server::varcache::Gucs;
use crate::shared::{Shared, Snapshot};

/// What a logged-in connection runs.
pub(super) enum Login {
    Session(Box<Driver>),
    /// The admin console (databases `pgsluice` and `pgbouncer`), and what the client sent
    /// after logging in.
    Console(crate::admin::console::Console, BytesMut),
}

/// Startup, authentication and the greeting. `None` when the connection was a cancel.
pub(super) async fn login(
    stream: &mut ClientStream,
    peer: Option<std::net::SocketAddr>,
    first: negotiate::First,
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    over_limit: bool,
) -> Result<Option<Login>, ClientError> {
    let (params, mut pending) = match first {
        negotiate::First::Cancel { pid, secret } => {
            if let Some(target) = shared.admin.clients.cancel_target(pid, secret) {
                cancel::send_cancel(target).await;
            }
            return Ok(None);
        }
        negotiate::First::Startup(p, pending) => (p, pending),
    };
    if over_limit {
        return Err(ClientError::fatal(
            "53300",
            "sorry, too many clients already",
        ));
    }
    if shared.draining() {
        return Err(ClientError::fatal("57P03", "pgsluice is shutting down"));
    }
    let user: &str = params
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
    let database: &str = params
        .get("database")
        .filter(|d| !d.is_empty())
        .map_or(user, String::as_str);
    if params.contains_key("replication") {
        return Err(ClientError::fatal(
            "0A000",
            "pgsluice does not support replication connections",
        ));
    }
    let config = &snap.config;
    let method = admit(stream, peer, config, user, database)?;
    let looked_up = match snap.users.get(user) {
        None if method != access::Method::Trust
            && config.database(database).is_some()
            && !crate::admin::is_admin_db(database) =>
        {
            auth_query::lookup(shared, database, user)
                .await
                .map_err(|e| {
                    tracing::warn!("{e}");
                    ClientError::fatal("08006", e.to_string())
                })?
        }
        _ => None,
    };
    let auth = snap.users.get(user).or(looked_up.as_deref());
    let auth_type = match method {
        access::Method::Cert => {
            startup::check_certificate(stream, &config.tls, user)?;
            None
        }
        access::Method::Trust => Some(AuthType::Trust),
        access::Method::Md5 => Some(AuthType::Md5),
        access::Method::ScramSha256 => Some(AuthType::ScramSha256),
        access::Method::Reject => None,
    };
    if let Some(t) = auth_type {
        let client_key = startup::authenticate(stream, t, user, auth, &mut pending).await?;
        remember_passthrough(shared, config, user, auth, client_key);
    }
    let meta = crate::registry::clients::ClientMeta::new(
        peer,
        stream.local_addr().ok(),
        params.get("application_name").map_or("", String::as_str),
    );
    if crate::admin::is_admin_db(database) {
        let console =
            crate::admin::console::login(shared, config, user.into(), database.into(), meta)
                .map_err(|(code, message)| ClientError::Fatal { code, message })?;
        return Ok(Some(Login::Console(console, pending)));
    }
    let db = config.database(database).ok_or_else(|| {
        ClientError::fatal("3D000", format!("database \"{database}\" does not exist"))
    })?;
    let db = db.as_ref();
    if shared.admin.is_disabled(database) {
        return Err(ClientError::fatal(
            "55000",
            format!("database \"{database}\" is disabled (DISABLE in the admin console)"),
        ));
    }
    let pool = shared
        .pools
        .get(config, database, user, 0)
        .ok_or_else(|| ClientError::fatal("28000", format!("no pool for user \"{user}\"")))?;
    let ticket = shared
        .pools
        .clients
        .admit(
            &pool.database,
            config.max_db_client_connections(database),
            &pool.user,
            config.max_user_client_connections(user),
        )
        .map_err(|e| ClientError::fatal("53300", e.to_string()))?;
    let server_params = pool
        .server_params(config::secs(config.general.query_wait_timeout))
        .await
        .map_err(|e| match e {
            crate::pool::PoolError::Server(s) => ClientError::Fatal {
                code: s.sqlstate().to_string(),
                message: s.to_string(),
            },
            other => ClientError::fatal("08006", other.to_string()),
        })?;
    let mut settings = startup_settings(&params, &server_params);
    let read_only = "default_transaction_read_only";
    if db.replicas_of.is_some()
        && !settings
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(read_only))
    {
        // A read-only endpoint's sessions are read-only wherever they run (the primary,
        // with primary_fallback, included).
        settings.push((Cow::Borrowed(read_only), Cow::Borrowed("on")));
    }
    let startup_gucs = pool.intern_settings(&settings);
    let mode = config.pool_mode(db, config.user(user));
    let force = startup_route(&params).unwrap_or(Force::Auto);
    let route = route_for(shared, config, database, user, mode, force);
    let key = &pool.key;
    let db_control = shared.admin.db(&key.database);
    let info = shared.admin.clients.register(|id| {
        ClientInfo::new(
            id,
            pool.user.clone(),
            pool.database.clone(),
            Some(key.node),
            meta,
            Some(db_control),
        )
        .admitted(ticket)
    });
    let driver = new_session(shared, pool, mode, snap, startup_gucs, route, info);
    let mut driver = Box::new(driver);
    greet(&mut driver, &server_params, &params, stream);
    if !pending.is_empty() {
        driver.pipelined(pending);
    }
    tracing::info!(user, database, client = driver.id(), "client logged in");
    Ok(Some(Login::Session(driver)))
}

/// The session's routing: for a database with replicas in transaction or statement mode
/// (with `read_write_split`), and for a read-only endpoint in every mode.
fn route_for(
    shared: &Shared,
    config: &config::Config,
    database: &str,
    user: &str,
    mode: PoolMode,
    force: Force,
) -> Option<Box<core::Route>> {
    let db = config.databases.get(database)?;
    let nodes = shared.nodes.get(config, database)?;
    let endpoint = db.replicas_of.is_some();
    let split = mode != PoolMode::Session && config.routing.read_write_split;
    if !nodes.has_replicas() || !(endpoint || split) {
        return None;
    }
    let allow = shared.snapshot.load().allow.clone();
    let mut route = core::Route::new(nodes, crate::router::Classifier::new(allow), force);
    route.user = user.to_string();
    if endpoint {
        route = route.endpoint(core::Endpoint {
            primary_fallback: db.primary_fallback,
        });
    }
    Some(Box::new(route))
}

/// Builds a logged-in client's session around its entry in the client list (`info`):
/// its core and the driver around it.
fn new_session(
    shared: &Arc<Shared>,
    pool: Arc<crate::pool::Pool>,
    mode: PoolMode,
    snap: &Arc<Snapshot>,
    startup: Arc<Gucs>,
    route: Option<Box<core::Route>>,
    info: Arc<ClientInfo>,
) -> Driver {
    let config = &snap.config;
    let g = &config.general;
    let tally = crate::metrics::Tally::new(
        shared.metrics.pool(&pool.key),
        config.metrics.enabled,
        config::secs(g.slow_query_threshold),
    );
    let limits = session_limits(snap, &pool, mode);
    let map = core::Mapping::new(shared.statements.clone(), g.max_prepared_statements);
    let mut core = core::Core::new(
        info.id,
        limits,
        core::SessionState::new(startup),
        map,
        route,
        core::Observe::new(info, tally),
    );
    if mode != PoolMode::Session {
        let allow = shared.snapshot.load().allow.clone();
        core.set_opaque_check(crate::router::Classifier::new(allow));
    }
    if shared.failpoints.armed() {
        core.set_failpoints(shared.failpoints.clone());
    }
    Driver::new(core, shared.clone(), pool)
}

thread_local! {
    /// This worker's session limits by pool (its database and user), for the configuration
    /// snapshot they were made from: one copy per worker and pool, not one per client.
    static LIMITS: RefCell<LimitsCache> = RefCell::new(LimitsCache::default());
}

#[derive(Default)]
struct LimitsCache {
    /// The snapshot the limits were made from (held weakly: its allocation stays, so its
    /// address is not another snapshot's).
    snapshot: Weak<Snapshot>,
    by_pool: foldhash::HashMap<(Arc<str>, Arc<str>), Arc<core::Limits>>,
}

/// The session limits of `pool`'s clients under `snap` (in `mode`, the pool's): made at
/// this worker's first login to the pool since `snap` came in.
fn session_limits(snap: &Arc<Snapshot>, pool: &Pool, mode: PoolMode) -> Arc<core::Limits> {
    LIMITS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.snapshot.as_ptr() != Arc::as_ptr(snap) {
            cache.snapshot = Arc::downgrade(snap);
            cache.by_pool.clear();
        }
        let key = (pool.database.clone(), pool.user.clone());
        cache
            .by_pool
            .entry(key)
            .or_insert_with(|| Arc::new(make_limits(&snap.config, &pool.key, mode)))
            .clone()
    })
}

fn make_limits(config: &config::Config, key: &PoolKey, mode: PoolMode) -> core::Limits {
    let g = &config.general;
    let timeouts = config
        .database(&key.database)
        .map(|db| config.session_timeouts(&db, config.user(&key.user)))
        .unwrap_or_default();
    core::Limits {
        mode,
        max_message: g.max_message_size,
        idle_txn: timeouts.idle_transaction,
        timeouts: (timeouts != config::SessionTimeouts::default()).then(|| Box::new(timeouts)),
        listen_here: mode != PoolMode::Session && g.listen_without_pinning,
        reset_query: Arc::from(g.server_reset_query.as_str()),
        rewrite: mode != PoolMode::Session && g.max_prepared_statements > 0,
        wait_timeout: config::secs(g.query_wait_timeout),
        park_after: config::secs(g.park_idle_after),
    }
}

/// Sends the end of the startup phase (as far as the socket takes it at once, the rest
/// queued): AuthenticationOk, parameters, our cancel key and ReadyForQuery.
/// Client-supplied values override the server's.
fn greet(
    driver: &mut Driver,
    server: &ServerParams,
    client: &BTreeMap<String, String>,
    stream: &mut ClientStream,
) {
    let mut buf = BytesMut::with_capacity(512);
    build::auth_ok(&mut buf);
    server.write(&mut buf, client);
    let (pid, secret) = driver.cancel_key();
    build::backend_key_data(&mut buf, pid, secret);
    build::ready_for_query(&mut buf, b'I');
    driver.greet(buf.freeze(), stream);
}

/// Applies `tls.client_mode`, `tls.client_cert` and the access rules; returns how the
/// client must authenticate.
fn admit(
    stream: &ClientStream,
    peer: Option<std::net::SocketAddr>,
    config: &config::Config,
    user: &str,
    database: &str,
) -> Result<access::Method, ClientError> {
    let tls = stream.is_tls();
    if config.tls.client_mode == ClientTlsMode::Require && !tls {
        return Err(ClientError::fatal(
            "28000",
            "pgsluice requires TLS (tls.client_mode = \"require\"): connect with sslmode=require",
        ));
    }
    let has_cert = stream.peer_certificate().is_some();
    if tls && config.tls.client_cert == ClientCert::VerifyCa && !has_cert {
        return Err(ClientError::fatal(
            "28000",
            "a client certificate is required (tls.client_cert = \"verify-ca\")",
        ));
    }
    let ip = peer.map(|a| a.ip());
    let client = access::Client {
        database,
        user,
        addr: ip,
        tls,
    };
    let describe = || {
        let host = ip.map_or("unknown".to_string(), |i| i.to_string());
        let tls = if tls { "TLS" } else { "no TLS" };
        format!("host {host}, user \"{user}\", database \"{database}\", {tls}")
    };
    match access::check(&config.access, &client) {
        Ok(Some(m)) => Ok(m),
        Ok(None) if config.tls.cert_login && has_cert => Ok(access::Method::Cert),
        Ok(None) => Ok(match config.auth.auth_type {
            AuthType::Trust => access::Method::Trust,
            AuthType::Md5 => access::Method::Md5,
            AuthType::ScramSha256 => access::Method::ScramSha256,
        }),
        Err(access::Refusal::Rejected { index, rule }) => Err(ClientError::fatal(
            "28000",
            format!(
                "access rule access[{index}] ({rule}) rejects {}",
                describe()
            ),
        )),
        Err(access::Refusal::NoMatch) => Err(ClientError::fatal(
            "28000",
            format!("no access rule matches {}", describe()),
        )),
    }
}

/// After a successful login, records what pgsluice can log in to servers with for
/// `user` when it has no plaintext password: the md5 hash, or the SCRAM verifier and the
/// ClientKey the client's proof revealed.
fn remember_passthrough(
    shared: &Shared,
    config: &config::Config,
    user: &str,
    auth: Option<&crate::shared::UserAuth>,
    client_key: Option<[u8; 32]>,
) {
    if config
        .user(user)
        .is_some_and(|u| u.server_password.is_some())
    {
        return;
    }
    let cred = match (auth.and_then(|a| a.secret.as_ref()), client_key) {
        (Some(Secret::Scram(v)), Some(k)) => PassThrough::Scram {
            verifier: v.clone(),
            client_key: k,
        },
        (Some(Secret::Md5(h)), _) => PassThrough::Md5(h.clone()),
        _ => return,
    };
    shared.pools.credentials.set(user, cred);
}

/// `pgsluice.route` from the startup packet (`options=-c pgsluice.route=primary`, or the
/// parameter itself).
fn startup_route(params: &BTreeMap<String, String>) -> Option<Force> {
    let from_options = params.get("options").and_then(|o| {
        parse_options(o)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("pgsluice.route"))
            .map(|(_, v)| v)
    });
    let value = from_options.or_else(|| params.get("pgsluice.route").cloned())?;
    Force::parse(&value)
}

/// The client's startup parameters that differ from the server's defaults, as
/// `(name, value)` in the order they apply (see `Pool::intern_settings`).
fn startup_settings<'a>(
    params: &'a BTreeMap<String, String>,
    server: &ServerParams,
) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
    let mut settings = Vec::new();
    let options = params
        .get("options")
        .map(|o| parse_options(o))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)));
    let explicit = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "options" | "replication"))
        .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())));
    for (name, value) in options.chain(explicit) {
        if name.starts_with("pgsluice.") {
            continue;
        }
        if !server.reports(&name, &value) {
            settings.push((name, value));
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config_of(toml: &str) -> config::Config {
        config::Config::from_toml_with_env(toml, std::iter::empty()).unwrap()
    }

    #[tokio::test]
    async fn session_limits_are_one_per_pool_and_made_again_for_a_new_configuration() {
        let toml = r#"
            [general]
            query_wait_timeout = 7
            [databases.app]
            primary = "127.0.0.1:1"
            [[users]]
            name = "u"
            password = "x"
            [[users]]
            name = "v"
            password = "x"
        "#;
        let shared = Shared::new(config_of(toml), None);
        let snap = shared.snapshot.load_full();
        let pool = shared.pools.get(&snap.config, "app", "u", 0).unwrap();
        let other = shared.pools.get(&snap.config, "app", "v", 0).unwrap();
        let a = session_limits(&snap, &pool, PoolMode::Transaction);
        assert!(Arc::ptr_eq(
            &a,
            &session_limits(&snap, &pool, PoolMode::Transaction)
        ));
        assert!(!Arc::ptr_eq(
            &a,
            &session_limits(&snap, &other, PoolMode::Transaction)
        ));
        assert_eq!(a.wait_timeout, Some(Duration::from_secs(7)));
        // RELOAD and SET swap in a new snapshot: sessions that log in from then on get
        // its settings.
        let newer = Arc::new(Snapshot::new(
            config_of(&toml.replace("= 7", "= 9")),
            snap.tls.clone(),
        ));
        let b = session_limits(&newer, &pool, PoolMode::Transaction);
        assert_eq!(b.wait_timeout, Some(Duration::from_secs(9)));
        assert_eq!(
            a.wait_timeout,
            Some(Duration::from_secs(7)),
            "older sessions keep theirs"
        );
    }
}
