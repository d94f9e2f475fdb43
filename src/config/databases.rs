//! `[databases.NAME]`: a database clients may name, and the nodes (weighted replicas) that
//! serve it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{NodeTls, PoolMode, ServerTlsMode, ServerTlsSettings, tls};

/// A replica: `"host:port"`, or `{ addr = "host:port", weight = 2 }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NodeSpec {
    Addr(String),
    Weighted {
        addr: String,
        #[serde(default = "one")]
        weight: u32,
    },
}

fn one() -> u32 {
    1
}

impl NodeSpec {
    pub fn addr(&self) -> &str {
        match self {
            NodeSpec::Addr(a) | NodeSpec::Weighted { addr: a, .. } => a,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            NodeSpec::Addr(_) => 1,
            NodeSpec::Weighted { weight, .. } => *weight,
        }
    }
}

/// `[databases.NAME]`: a database clients may name, and the nodes that serve it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The database name on the server; defaults to the key.
    #[serde(default)]
    pub dbname: Option<String>,
    /// `host:port` of the primary (for a read-only endpoint, copied from its database).
    #[serde(default)]
    pub primary: String,
    /// A read-only endpoint: the replicas of the named database serve every session (see
    /// `endpoints.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_of: Option<String>,
    /// For a read-only endpoint: the primary serves its sessions (read-only) when no
    /// replica can.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_fallback: bool,
    #[serde(default)]
    pub replicas: Vec<NodeSpec>,
    /// The primary's share of reads when `routing.primary_reads = "always"`.
    #[serde(default = "one")]
    pub primary_weight: u32,
    #[serde(default)]
    pub pool_size: Option<usize>,
    #[serde(default)]
    pub min_pool_size: Option<usize>,
    #[serde(default)]
    pub pool_mode: Option<PoolMode>,
    /// TLS to this database's servers (see `tls.rs`); default "prefer".
    #[serde(default)]
    pub server_tls: Option<ServerTlsMode>,
    #[serde(default)]
    pub server_ca_file: Option<String>,
    /// Client certificate and key pgsluice presents to servers that ask for one.
    #[serde(default)]
    pub server_cert_file: Option<String>,
    #[serde(default)]
    pub server_key_file: Option<String>,
    /// Per-node overrides of the four keys above, by node address (`"host:port"`).
    #[serde(default)]
    pub node_tls: BTreeMap<String, NodeTls>,
    /// Server connections across all pools of this database (overrides the general one).
    #[serde(default)]
    pub max_db_connections: Option<usize>,
    #[serde(default)]
    pub max_db_client_connections: Option<usize>,
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

impl Database {
    /// The server TLS settings of the node at `addr`.
    pub fn server_tls_for(&self, addr: &str) -> ServerTlsSettings {
        tls::resolve(self, addr)
    }
}
