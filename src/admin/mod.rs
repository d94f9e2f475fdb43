//! The admin console: the virtual database `pgsluice` (also `pgbouncer`, so that existing
//! tools and exporters work), with PgBouncer's commands and column names plus our own.
//!
//! - [`console`]: the session of an admin client (simple query protocol).
//! - [`command`]: parsing a command line.
//! - [`show`]: the SHOW commands.
//! - [`act`]: the commands that change something (RELOAD, PAUSE, KILL, SET, ...).
//! - [`control`]: PAUSE/DISABLE/KILL/SHUTDOWN state and how sessions obey it.
//! - [`registry`]: the list of logged-in clients.
//! - [`view`]: pools with their clients and servers, for SHOW POOLS and `/metrics`.

mod act;
pub mod command;
pub mod console;
pub mod control;
pub mod registry;
mod show;
mod table;
pub mod view;

pub use control::Control;

/// Names clients use to reach the admin console (`pgbouncer` for existing tools).
pub const ADMIN_DATABASES: &[&str] = &["pgsluice", "pgbouncer"];

pub fn is_admin_db(name: &str) -> bool {
    ADMIN_DATABASES.contains(&name)
}

/// What a console user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `auth.admin_users`: every command.
    Admin,
    /// `auth.stats_users`: SHOW commands only.
    Stats,
}

/// The role of `user` under `auth`, `None` when it may not use the console.
pub fn role(auth: &crate::config::Auth, user: &str) -> Option<Role> {
    if auth.admin_users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if auth.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    }
}
