//! The accept loops (TCP, and the Unix-domain socket `.s.PGSQL.<port>` in
//! `unix_socket_dir`): client limits, one task per client, and the drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};

use crate::client;
use crate::config::{self, Config};
use crate::net::ClientStream;
use crate::shared::{Phase, Shared};

/// Accepts clients until pgsluice starts draining (see [`drain`]).
///
/// Several workers may accept on clones of one listening socket; the kernel hands each
/// connection to one of them.
pub async fn accept_until_drain(listener: TcpListener, shared: Arc<Shared>) {
    let mut phase = shared.drain.subscribe();
    while *phase.borrow_and_update() == Phase::Running {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    spawn_client(ClientStream::Plain(stream), Some(peer), &shared)
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = phase.changed() => {}
        }
    }
}

/// [`accept_until_drain`] on the Unix-domain socket; the socket file is removed when the
/// loop ends.
pub async fn accept_unix_until_drain(
    listener: std::os::unix::net::UnixListener,
    shared: Arc<Shared>,
) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.to_path_buf()));
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot serve the Unix socket: {e}");
            return;
        }
    };
    let mut phase = shared.drain.subscribe();
    while *phase.borrow_and_update() == Phase::Running {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => spawn_client(ClientStream::Unix(stream), None, &shared),
                Err(e) => {
                    tracing::warn!("accept failed on the Unix socket: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = phase.changed() => {}
        }
    }
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

/// Binds `unix_socket_dir/.s.PGSQL.<port of listen_addr>` (as PostgreSQL and PgBouncer
/// name it, so `psql -h DIR -p PORT` finds it) with `unix_socket_mode`; `None` when no
/// directory is set. A socket file left by an earlier run is replaced.
pub fn bind_unix(config: &Config) -> std::io::Result<Option<std::os::unix::net::UnixListener>> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.general.unix_socket_dir;
    if dir.is_empty() {
        return Ok(None);
    }
    let port = config
        .general
        .listen_addr
        .parse::<std::net::SocketAddr>()
        .map_or(6432, |a| a.port());
    let path = std::path::Path::new(dir).join(format!(".s.PGSQL.{port}"));
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by another server", path.display()),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    let mode = config.unix_socket_mode().unwrap_or(0o777);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    tracing::info!("listening on Unix socket {}", path.display());
    Ok(Some(listener))
}

/// Accepts clients until `shutdown` completes, then drains. For a single runtime.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let unix = match bind_unix(&shared.snapshot.load().config) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("cannot listen on the Unix socket: {e}");
            None
        }
    };
    if let Some(u) = unix {
        tokio::spawn(accept_unix_until_drain(u, shared.clone()));
    }
    let accept = tokio::spawn(accept_until_drain(listener, shared.clone()));
    shutdown.await;
    drain(&shared).await;
    let _ = accept.await;
}

/// `peer`: the client's address as `accept` gave it (`None` on the Unix socket).
fn spawn_client(stream: ClientStream, peer: Option<SocketAddr>, shared: &Arc<Shared>) {
    let max = shared.snapshot.load().config.general.max_client_conn;
    let count = shared.clients.fetch_add(1, Ordering::AcqRel) + 1;
    let guard = client::Counted(shared.clone());
    // Made here, not inside the task's block: the block would keep its own copies of the
    // arguments beside the session's, in every client's memory.
    let session = client::handle(stream, peer, shared.clone(), count > max);
    tokio::spawn(async move {
        if let Some((driver, stream)) = session.await {
            client::lot::park(driver, stream, guard);
        }
    });
}

/// Stops accepting, lets clients leave at their next transaction boundary, and after
/// `shutdown_timeout` closes the rest. Returns when no client is left (or shortly after the
/// timeout), with the phase set to [`Phase::Exit`].
pub async fn drain(shared: &Arc<Shared>) {
    let limit = config::secs(shared.snapshot.load().config.general.shutdown_timeout);
    drain_within(shared, limit).await;
}

/// [`drain`] with a given limit instead of `shutdown_timeout` (`Some(ZERO)`: close every
/// client at once, for the admin console's SHUTDOWN).
pub async fn drain_within(shared: &Arc<Shared>, limit: Option<Duration>) {
    let clients = shared.clients.load(Ordering::Acquire);
    tracing::info!(
        clients,
        "draining: waiting for clients to finish their transactions"
    );
    shared.set_phase(Phase::Draining);
    let wait = async {
        while shared.clients.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    match limit {
        Some(l) => {
            if tokio::time::timeout(l, wait).await.is_err() {
                let left = shared.clients.load(Ordering::Acquire);
                tracing::warn!(left, "shutdown_timeout reached; closing remaining clients");
                shared.set_phase(Phase::Closing);
                // Give sessions a moment to tell their clients and close their servers.
                let gone = async {
                    while shared.clients.load(Ordering::Acquire) > 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), gone).await;
            }
        }
        None => wait.await,
    }
    shared.set_phase(Phase::Exit);
    let s = &shared.statements;
    tracing::info!(
        statements = s.len(),
        server_parses = s.server_parses.load(Ordering::Relaxed),
        local_parses = s.local_parses.load(Ordering::Relaxed),
        "prepared statements: distinct, Parse messages sent to servers, answered by pgsluice"
    );
}
