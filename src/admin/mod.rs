//! The admin console: the virtual database `pgsluice` (also `pgbouncer`, so that existing
//! tools and exporters work), with PgBouncer's commands and column names plus our own.
//!
//! - [`console`]: the session of an admin client (simple query protocol).
//! - [`command`]: parsing a command line.
//! - [`show`]: the SHOW commands.
//! - [`act`]: the commands that change something (RELOAD, PAUSE, KILL, SET, ...).
//! - [`view`]: pools with their clients and servers, for SHOW POOLS and `/metrics`.

mod act;
pub mod command;
pub mod console;
mod show;
mod table;
pub mod view;

pub use crate::config::{ADMIN_DATABASES, is_admin_db};

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

#[cfg(test)]
mod fuzz_tests;
