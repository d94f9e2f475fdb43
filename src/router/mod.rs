//! Read/write routing: which node a transaction runs on.
//!
//! - [`classify`]: whether a statement text is provably read-only (sqlparser, cached),
//!   with the function [`allowlist`].
//! - [`functions`]: function volatility from the catalog, resolved through a session's
//!   search_path.
//! - [`nodes`]: each node's health and lag; `balance`: the choice of a node for a read;
//!   `policy`: the routing settings they follow; `lsn`: WAL positions.
//! - [`route`]: the decision, pure: a unit of work and node states in, a node out.
//! - `monitor`: the task per node that keeps that health current (and the primary's
//!   reads of the function catalog).
//!
//! The session core (src/client/core/route.rs) keeps what a session adds: the route the
//! application forced, and the LSN its reads must see; src/client/core/ryw.rs asks a
//! replica whether it has that LSN.

pub mod allowlist;
mod balance;
pub mod classify;
pub mod functions;
mod lsn;
mod monitor;
pub mod nodes;
mod opaque;
mod policy;
pub mod route;

pub use balance::{PROBE_SLACK, Pick};
pub use classify::{Allowlist, Class, Classifier, Hint, NotRead};
pub use functions::{Catalog, FuncRef, Resolved, SearchPath};
pub use lsn::{format_lsn, parse_lsn, parse_lsn_bytes};
pub use monitor::{Source, supervise};
pub use nodes::{DbNodes, NodeStatus, Nodes};
pub use route::ToPrimary;

#[cfg(test)]
mod fuzz_tests;
