//! A client connection: startup and authentication, then the session: a sans-I/O core
//! ([`core`]) that decides everything, driven by a thin async shell ([`driver`]) that owns
//! the sockets and the server checkout.

mod auth_query;
mod buffers;
pub mod cancel;
pub mod core;
pub mod driver;
mod hold;
mod io;
mod login;
pub mod lot;
mod negotiate;
pub mod outq;
mod startup;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::config;
use crate::net::ClientStream;
use crate::protocol::build;
use crate::shared::{Shared, Snapshot};
use login::{Login, login};

/// Why a client connection ends before or outside the relay.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed the connection")]
    Eof,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("{message}")]
    Fatal { code: String, message: String },
}

impl ClientError {
    /// A protocol violation (SQLSTATE 08P01).
    pub fn protocol(message: impl Into<String>) -> ClientError {
        ClientError::fatal("08P01", message)
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> ClientError {
        ClientError::Fatal {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// Decrements the client count when a client's session ends, however it ends (parked
/// clients keep theirs in the lot).
pub struct Counted(pub Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The task's other guards (its server lease, its registrations) unwind too;
            // the runtime catches the panic, so no other client is affected.
            self.0
                .metrics
                .panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.0
            .clients
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves one accepted connection until it ends or leaves its task: `Some` is a session
/// for its worker's session loop ([`lot::park`]): one on plain TCP or a Unix socket once
/// it logged in, a TLS one never. `over_limit` says the client count was already at
/// `max_client_conn` when it was accepted; `peer` is the client's address from `accept`
/// (`None` on a Unix socket), so that login asks the system for it no more.
///
/// The task of a logged-in client holds only its session's driver and socket while it is
/// idle: everything before the session (TLS, authentication, the console, a refusal's
/// report) runs in [`open`], boxed and gone once the session starts. (Not an `async fn`:
/// its arguments would stay in the task's memory beside the copies `open` took.)
pub fn handle(
    stream: ClientStream,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
    over_limit: bool,
) -> impl std::future::Future<Output = Option<(Box<driver::Driver>, ClientStream)>> + Send {
    let open = Box::pin(open(stream, peer, shared, over_limit));
    async move {
        let (session, stream) = open.await?;
        if !stream.is_tls() {
            // For the worker's session loop (`lot.rs`).
            return Some((session, stream));
        }
        session.run(stream).await
    }
}

/// Everything up to a session: the first packets, login, and the console or a refusal's
/// report when that is what the connection turns out to be. `Some` for a session.
async fn open(
    stream: ClientStream,
    peer: Option<SocketAddr>,
    shared: Arc<Shared>,
    over_limit: bool,
) -> Option<(Box<driver::Driver>, ClientStream)> {
    let snap = shared.snapshot.load_full();
    if let Some(tcp) = stream.tcp_socket() {
        let _ = tcp.set_nodelay(true);
        if let Some(k) = snap.config.keepalive()
            && let Err(e) = k.apply(socket2::SockRef::from(tcp))
        {
            tracing::debug!("cannot set TCP keepalive on a client socket: {e}");
        }
    }
    let deadline = config::secs(snap.config.general.client_login_timeout)
        .map(|t| tokio::time::Instant::now() + t);
    // Boxed: the first packets' state (the TLS handshake, a refusal's report) is large
    // and over before login.
    let (mut stream, first) = Box::pin(start(stream, peer, &snap, deadline)).await?;
    let result = within(
        deadline,
        login(&mut stream, peer, first, &shared, &snap, over_limit),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ClientError::protocol(
            "timed out waiting for startup and authentication",
        ))
    });
    drop(snap);
    match result {
        Ok(Some(Login::Session(session))) => return Some((session, stream)),
        // Boxed: the console is rare, and its state would size every login.
        Ok(Some(Login::Console(console, pending))) => Box::pin(console.run(stream, pending)).await,
        Ok(None) => {}
        Err(e) => Box::pin(report(&mut stream, peer, e)).await,
    }
    None
}

/// The first packets and TLS (see `negotiate.rs`); `None` when the connection ended there.
async fn start(
    stream: ClientStream,
    peer: Option<SocketAddr>,
    snap: &Snapshot,
    deadline: Option<tokio::time::Instant>,
) -> Option<(ClientStream, negotiate::First)> {
    let acceptor = snap.tls.acceptor.as_deref();
    // Boxed: the TLS handshake's state is large and rare.
    let negotiated = within(deadline, Box::pin(negotiate::negotiate(stream, acceptor))).await;
    match negotiated {
        Ok(Ok(s)) => Some(s),
        Ok(Err(refused)) => {
            match refused.stream {
                Some(mut stream) => report(&mut stream, peer, refused.error).await,
                None => tracing::info!(
                    ?peer,
                    "connection refused during startup: {}",
                    refused.error
                ),
            }
            None
        }
        Err(_) => None,
    }
}

/// `fut`, cut at `deadline` when there is one. A future of its own rather than an
/// `async fn`: that one kept `fut` twice (its argument, and inside the timeout it was
/// moved into), ~1 KiB more in every login's boxed state, copied as it was made
/// (stop 41).
fn within<F: std::future::Future>(deadline: Option<tokio::time::Instant>, fut: F) -> Within<F> {
    match deadline {
        Some(d) => Within::Timed {
            fut: tokio::time::timeout_at(d, fut),
        },
        None => Within::Open { fut },
    }
}

pin_project_lite::pin_project! {
    /// What [`within`] returns.
    #[project = WithinNow]
    enum Within<F> {
        Timed { #[pin] fut: tokio::time::Timeout<F> },
        Open { #[pin] fut: F },
    }
}

impl<F: std::future::Future> std::future::Future for Within<F> {
    type Output = Result<F::Output, tokio::time::error::Elapsed>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project() {
            WithinNow::Timed { fut } => fut.poll(cx),
            WithinNow::Open { fut } => fut.poll(cx).map(Ok),
        }
    }
}

/// Logs why a login failed and tells the client, when it is a FATAL it should see.
async fn report(stream: &mut ClientStream, peer: Option<SocketAddr>, e: ClientError) {
    if let ClientError::Fatal { code, message } = &e {
        tracing::info!(?peer, code, "login refused: {message}");
        let mut buf = BytesMut::new();
        build::error(&mut buf, "FATAL", code, message);
        let _ = stream.write_all(&buf).await;
        let _ = stream.flush().await;
    } else {
        tracing::debug!(?peer, "connection ended during login: {e}");
    }
}

#[cfg(test)]
mod tests {
    /// Every connected client, idle or not, holds its task's future: what it keeps across
    /// an await is memory per client (issue 14 measures 10,000 idle clients). Rare paths
    /// (login, connect, the console, cleanup) and the active relay are boxed so that they
    /// do not size it; an idle client's task keeps only this future (184 bytes in the
    /// release build of 2026-12-04) and its boxed `Driver`.
    #[tokio::test]
    #[cfg_attr(debug_assertions, ignore = "sizes are those of the release build")]
    async fn client_task_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        let toml = "[databases.app]\nprimary = \"127.0.0.1:1\"\n";
        let config = crate::Config::from_toml_with_env(toml, std::iter::empty()).unwrap();
        let task = super::handle(
            crate::net::ClientStream::Plain(s),
            None,
            crate::Shared::new(config, None),
            false,
        );
        let (task, session, parked) = (
            std::mem::size_of_val(&task),
            std::mem::size_of::<super::driver::Driver>(),
            std::mem::size_of::<super::driver::Idle>(),
        );
        let entry = std::mem::size_of::<crate::registry::clients::ClientInfo>();
        println!(
            "client task future: {task} bytes; Driver: {session} bytes; parked: {parked}; \
             client-list entry: {entry}"
        );
        assert!(task <= 256, "client task future is {task} bytes");
        // The held server's state, a retry and a chore are boxed in the core (absent while
        // idle).
        assert!(session <= 1184, "Driver (with its core) is {session} bytes");
        // What a parked client keeps in its worker's lot (`lot.rs`) instead of its task
        // and `Driver`.
        assert!(parked <= 320, "a parked session is {parked} bytes");
    }
}
