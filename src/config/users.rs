//! `[[users]]`: the users clients may log in as, with their per-user overrides.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PoolMode;

/// `[[users]]`: one user clients may log in as.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Plaintext, `md5...` or `SCRAM-SHA-256$...`.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding `password` (e.g. a mounted Kubernetes Secret); read at load.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Password for the server, when `password` is a verifier (or differs).
    #[serde(default)]
    pub server_password: Option<String>,
    /// A file holding `server_password`; read at load.
    #[serde(default)]
    pub server_password_file: Option<PathBuf>,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// Server connections across all pools of this user (overrides the general one).
    #[serde(default)]
    pub max_user_connections: Option<usize>,
    #[serde(default)]
    pub max_user_client_connections: Option<usize>,
    #[serde(default)]
    pub reserve_pool_size: Option<usize>,
    #[serde(default)]
    pub query_timeout: Option<f64>,
    #[serde(default)]
    pub transaction_timeout: Option<f64>,
    #[serde(default)]
    pub client_idle_timeout: Option<f64>,
    #[serde(default)]
    pub idle_transaction_timeout: Option<f64>,
}
