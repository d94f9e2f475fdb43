//! Read/write routing: which node a transaction runs on.
//!
//! - [`classify`]: whether a statement text is provably read-only (sqlparser, cached).
//! - [`nodes`]: each node's health and lag, kept current by a monitor task per node, and
//!   the choice of a node for a read.
//!
//! The session (src/client/route.rs) combines them with its own state: the route the
//! application forced, and the LSN its reads must see.

pub mod classify;
pub mod nodes;

pub use classify::{Allowlist, Class, Classifier, Hint};
pub use nodes::{DbNodes, NodeStatus, Nodes, format_lsn, parse_lsn, supervise};
