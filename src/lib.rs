//! pgsluice: a PostgreSQL connection pooler and read/write query router.
//!
//! Applications connect to pgsluice as to PostgreSQL; it serves many clients over a few
//! pooled server connections, in session, transaction or statement mode.
//!
//! # Layout
//! From the bottom up; a module uses only those above it in this list (no import
//! cycles between top-level modules: `python3 ../shared/tools/modcycles.py src`).
//! - [`protocol`]: wire framing and the few messages we decode or build.
//! - [`sql`]: SQL text tooling: lexer, normaliser, prefilters, session-state effects.
//! - [`auth`]: md5 and SCRAM-SHA-256 (with channel binding) on both sides, `auth_query`,
//!   SCRAM and md5 pass-through.
//! - [`config`]: the TOML configuration, environment overrides, validation.
//! - [`tls`]: rustls on both sides: certificates from PEM files, server modes, SNI.
//! - [`net`]: client and server connections, plain TCP or TLS, behind one narrow API.
//! - [`access`]: access rules (`pg_hba.conf` in small).
//! - [`server`]: a server connection: connect, authenticate, settings, its statements.
//! - [`listen`]: LISTEN without pinning: one listening server connection per (database,
//!   user), notifications fanned out to the clients listening.
//! - [`pool`]: checkout/checkin, waiting, maintenance, limits across pools.
//! - [`router`]: read/write classification, node health and the lag monitor.
//! - [`prepare`]: the pooler-wide registry of named prepared statements.
//! - [`registry`]: the client list, cancel keys, PAUSE/DISABLE/KILL state.
//! - [`metrics`]: per-pool statistics and the slow query log.
//! - [`wake`]: waking every session at once (drain, KILL).
//! - [`shared`]: state shared by all tasks; reload.
//! - [`admin`]: the admin console.
//! - [`client`]: a client's startup, authentication and session; a worker's sessions on
//!   plain TCP or a Unix socket run in its session loop (`client/lot.rs`: one task, the
//!   client sockets in its own epoll set), where idle ones park in a compact form.
//! - [`import`]: `pgsluice import-pgbouncer`: a pooler.toml from a pgbouncer.ini.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`listener`]: the accept loop, client limits, drain.
//! - [`logfmt`]: the JSON log line, written without serde (one per login and logout).
// Measured exceptions, each allowed on its own function: `tls::stream::set_recv_lowat` (a
// `setsockopt` that neither tokio nor socket2 offers); `tls::sys` (`recv`, `send` and
// `sendmsg` by direct system call, ~180 instructions per transaction less than glibc's
// cancellable wrappers, stop 37; and `recv_buf`, the length of a buffer `recv` filled, as
// tokio's own read sets it, for the loop's client sockets and plain TCP server sockets).
#![deny(unsafe_code)]
// No panic from input: no string slicing by byte index, no unwrap/expect outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::string_slice, clippy::unwrap_used, clippy::expect_used)
)]

pub mod access;
pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod http;
pub mod import;
pub mod listen;
pub mod listener;
pub mod logfmt;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod prepare;
pub mod protocol;
pub mod registry;
pub mod router;
pub mod server;
pub mod shared;
pub mod sql;
pub mod tls;
pub mod wake;

#[cfg(test)]
mod fuzz;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;
pub use shared::Shared;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The worker thread this code runs on (0 outside workers). Server connections remember
/// the worker that opened them, so a client prefers connections its own thread drives.
pub fn current_worker() -> usize {
    WORKER.with(|w| w.get())
}

/// Serves clients on `listener` with the state in `shared` until `shutdown` completes,
/// then drains and returns. Runs on whatever runtime calls it.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let janitor = tokio::spawn(pool::maintain_all(shared.pools.clone()));
    let monitor = tokio::spawn(router::supervise(shared.clone()));
    listener::serve(listener, shared, shutdown).await;
    janitor.abort();
    monitor.abort();
}

/// One worker thread's share of the work: accept clients on a clone of the listening
/// socket and run their sessions on this thread's single-threaded runtime, until the drain
/// has finished. Worker 0 also runs the pool janitor and the node monitors.
///
/// Why one single-threaded runtime per core rather than one work-stealing runtime:
/// measured on 2 cores with `pgbench -S`, the work-stealing scheduler cost about 40% more
/// CPU per transaction (cross-thread wake-ups, futex traffic) than a single event loop.
pub async fn worker(
    id: usize,
    listener: std::net::TcpListener,
    unix: Option<std::os::unix::net::UnixListener>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    WORKER.with(|w| w.set(id));
    let listener = TcpListener::from_std(listener)?;
    let unix = unix.map(|u| tokio::spawn(listener::accept_unix_until_drain(u, shared.clone())));
    let janitor = (id == 0).then(|| tokio::spawn(pool::maintain_all(shared.pools.clone())));
    let monitor = (id == 0).then(|| tokio::spawn(router::supervise(shared.clone())));
    listener::accept_until_drain(listener, shared.clone()).await;
    // Its loop ends at the drain too and removes the socket file: awaited, so a runtime
    // that ends first does not drop it midway.
    if let Some(u) = unix {
        let _ = u.await;
    }
    let mut phase = shared.drain.subscribe();
    while *phase.borrow_and_update() != shared::Phase::Exit {
        if phase.changed().await.is_err() {
            break;
        }
    }
    for task in [janitor, monitor].into_iter().flatten() {
        task.abort();
    }
    Ok(())
}
