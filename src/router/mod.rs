//! Read/write routing: which node a transaction runs on.
//!
//! - [`classify`]: whether a statement text is provably read-only (sqlparser, cached).
//! - [`nodes`]: each node's health and lag, and the choice of a node for a read.
//! - [`route`]: the decision, pure: a unit of work and node states in, a node out.
//! - `monitor`: the task per node that keeps that health current.
//!
//! The session core (src/client/core/route.rs) keeps what a session adds: the route the
//! application forced, and the LSN its reads must see.

pub mod classify;
mod monitor;
pub mod nodes;
pub mod route;

pub use classify::{Allowlist, Class, Classifier, Hint};
pub use monitor::{Source, supervise};
pub use nodes::{DbNodes, NodeStatus, Nodes, format_lsn, parse_lsn};

#[cfg(test)]
mod fuzz_tests;
