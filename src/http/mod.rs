//! The HTTP endpoints on `admin.http_listen_addr`: `/metrics` (Prometheus), `/healthz`
//! (the process is up and accepting) and `/readyz` (ready for traffic: configuration
//! loaded, every database's primary reachable, not draining).

mod prometheus;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use crate::pool::PoolKey;
use crate::registry::clients::ClientState;
use crate::shared::Shared;

/// How long a primary's reachability is remembered between probes.
const PROBE_CACHE: Duration = Duration::from_secs(1);
/// How long a probe connection may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves the endpoints until the process ends. Runs on the control thread's runtime, so
/// a slow scrape never delays a client.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let probes: Arc<Probes> = Arc::default();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let probes = probes.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let probes = probes.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &probes, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, svc);
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection: {e}");
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn handle(shared: &Shared, probes: &Probes, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus::render(shared),
        ),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match readiness(shared, probes).await {
            Ok(()) => text(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

/// Says once, at start, whether each database's primary answers: WARN with the reason
/// when it does not (clients of that database will get errors, and `/readyz` answers 503
/// until it does). Databases with replicas are left to the node monitor, which logs the
/// same at WARN on its first check.
pub async fn log_primaries_at_start(shared: Arc<Shared>) {
    let probes = Probes::default();
    let snap = shared.snapshot.load_full();
    for (name, db) in &snap.config.databases {
        if !db.replicas.is_empty() {
            continue;
        }
        match primary_reachable(&shared, &probes, name).await {
            Ok(()) => tracing::info!(database = name, primary = db.primary, "primary reachable"),
            Err(e) => tracing::warn!(
                database = name,
                primary = db.primary,
                "primary unreachable at start: {e}"
            ),
        }
    }
}

/// A probe's time and outcome.
type Probe = (Instant, Result<(), String>);

/// Recent probe results by database.
#[derive(Default)]
struct Probes {
    last: Mutex<HashMap<String, Probe>>,
}

/// Ready when not draining and every configured database's primary is reachable.
async fn readiness(shared: &Shared, probes: &Probes) -> Result<(), String> {
    if shared.draining() {
        return Err("draining (shutting down)".into());
    }
    let names: Vec<String> = shared
        .snapshot
        .load()
        .config
        .databases
        .keys()
        .cloned()
        .collect();
    for name in names {
        primary_reachable(shared, probes, &name)
            .await
            .map_err(|e| format!("database \"{name}\": primary unreachable: {e}"))?;
    }
    Ok(())
}

/// A database's primary is reachable when one of its pools has a live connection to it
/// (idle, or in use by a client), or else when a fresh connection to it succeeds
/// (remembered for a second, so probes cannot flood the server).
async fn primary_reachable(shared: &Shared, probes: &Probes, db: &str) -> Result<(), String> {
    // With replicas, the node monitor knows which node is the primary now (after a
    // failover too) and whether it answers.
    if let Some(nodes) = shared
        .nodes
        .all()
        .into_iter()
        .find(|d| d.database == db && d.has_replicas())
    {
        let status = nodes.status();
        let writer = &status[nodes.writer()];
        // Before the monitor's first check of it, "up" is only an assumption: probe.
        if writer.checked {
            return if writer.up {
                Ok(())
            } else {
                Err(format!("{} ({})", writer.addr, writer.why_not))
            };
        }
    }
    let pools: Vec<_> = shared
        .pools
        .all()
        .into_iter()
        .filter(|p| p.key.database == db && p.key.node == 0)
        .collect();
    if pools.iter().any(|p| p.snapshot().idle > 0) {
        return Ok(());
    }
    let in_use = shared.admin.clients.all().iter().any(|c| {
        c.state() == ClientState::Active
            && c.server().is_some()
            && &*c.database == db
            && c.node() == Some(0)
    });
    if in_use {
        return Ok(());
    }
    if let Some((at, r)) = probes
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(db)
        && at.elapsed() < PROBE_CACHE
    {
        return r.clone();
    }
    let r = probe(shared, db, pools.first().map(|p| p.key.user.clone())).await;
    probes
        .last
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(db.to_string(), (Instant::now(), r.clone()));
    r
}

/// Opens and closes one server connection to `db`'s primary, as the pool's user (or
/// the first configured user); with no such user, a TCP connect. A server that answers
/// with an error is reachable (a wrong password or a missing role concerns that user),
/// except for class 57 (starting up, shutting down, in recovery crash) and 53 (too many
/// connections): clients could not use it either.
async fn probe(shared: &Shared, db: &str, user: Option<String>) -> Result<(), String> {
    let snap = shared.snapshot.load();
    let config = &snap.config;
    let settings = user
        .into_iter()
        .chain(config.users.iter().map(|u| u.name.clone()))
        .find_map(|user| {
            let key = PoolKey {
                database: db.to_string(),
                user,
                node: 0,
            };
            shared.pools.settings(config, &key)
        });
    match settings {
        Some(s) => match crate::server::connect(&s.target, 0, Some(PROBE_TIMEOUT)).await {
            Ok(conn) => {
                conn.close();
                Ok(())
            }
            Err(crate::server::ServerError::Db(f))
                if !f.code.starts_with("57") && !f.code.starts_with("53") =>
            {
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        None => {
            let addr = config
                .databases
                .get(db)
                .map(|d| d.primary.clone())
                .ok_or("database removed")?;
            let (host, port) = crate::config::parse_host_port(&addr)?;
            let connect = async {
                if host.starts_with('/') {
                    let path = format!("{}/.s.PGSQL.{port}", host.trim_end_matches('/'));
                    tokio::net::UnixStream::connect(path).await.map(drop)
                } else {
                    tokio::net::TcpStream::connect((host.as_str(), port))
                        .await
                        .map(drop)
                }
            };
            tokio::time::timeout(PROBE_TIMEOUT, connect)
                .await
                .map_err(|_| format!("timed out connecting to {addr}"))?
                .map_err(|e| format!("{addr}: {e}"))
        }
    }
}
