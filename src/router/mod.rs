//! Read/write routing: which node a transaction runs on.
//!
//! - [`classify`]: whether a statement text is provably read-only (sqlparser, cached).
//! - [`nodes`]: each node's health and lag, and the choice of a node for a read.
//! - `monitor`: the task per node that keeps that health current.
//!
//! The session (src/client/route.rs) combines them with its own state: the route the
//! application forced, and the LSN its reads must see.

pub mod classify;
mod monitor;
pub mod nodes;

pub use classify::{Allowlist, Class, Classifier, Hint};
pub use monitor::{Source, supervise};
pub use nodes::{DbNodes, NodeStatus, Nodes, format_lsn, parse_lsn};
