//! pgsluice: a PostgreSQL connection pooler and read/write query router.
//!
//! Applications connect to pgsluice as to PostgreSQL; it serves many clients over a few
//! pooled server connections, in session, transaction or statement mode.
//!
//! # Layout
//! - [`config`]: the TOML configuration, environment overrides, validation.
//! - [`protocol`]: wire framing and the few messages we decode or build.
//! - [`auth`]: md5 and SCRAM-SHA-256, client-facing.
//! - [`listener`]: the accept loop, client limits, drain.
//! - [`client`]: a client's startup, authentication and session relay.
//! - [`server`]: a server connection: connect, authenticate, settings.
//! - [`pool`]: checkout/checkin, waiting, maintenance.
//! - [`shared`]: state shared by all tasks; reload.
//! - [`admin`]: the admin console names.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod listener;
pub mod pool;
pub mod protocol;
pub mod server;
pub mod shared;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;
pub use shared::Shared;

/// Serves clients on `listener` with the state in `shared` until `shutdown` completes,
/// then drains and returns.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let janitor = tokio::spawn(pool::maintain_all(shared.pools.clone()));
    listener::serve(listener, shared, shutdown).await;
    janitor.abort();
}
