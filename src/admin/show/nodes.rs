//! SHOW NODES (ours): every node of every database with replicas, as the router sees it.

use crate::admin::table::{Table, V};
use crate::router::format_lsn;
use crate::shared::Shared;

/// One row per node: `role` (primary: takes writes now; replica; standalone: up, not in
/// recovery, yet not the primary in use), `up`, whether it is in the read set now and
/// why not, its WAL position (`lsn`: replay LSN of a replica, insert LSN of the primary),
/// lag in bytes and seconds, clients on it now, transactions routed to it as reads and as
/// writes, and reads it refused as writes (25006) or lost that went to the primary
/// instead. `ryw_fallbacks` and `read_fallbacks` are per database: reads sent to the
/// primary because no replica had replayed the session's own write, or because no replica
/// was usable at all. Then, per node: read-your-writes probes of a replica and those that
/// found it behind (`ryw_probes`, `ryw_probe_misses`), and the units a node served as the
/// primary by why they went there (`primary_write`, `primary_function`: a volatile or
/// unknown function, `primary_lag`, `primary_ryw_timeout`: a probe missed,
/// `primary_no_replica`, `primary_forced`: a hint, `pgsluice.route` or a retry).
/// Databases without replicas have no monitor and are not listed.
pub(super) fn nodes(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "database",
        "#node",
        "addr",
        "role",
        "up",
        "in_read_set",
        "why_not",
        "lsn",
        "#lag_bytes",
        "lag_seconds",
        "#clients",
        "#reads",
        "#writes",
        "#retries",
        "#ryw_fallbacks",
        "#read_fallbacks",
        "#ryw_probes",
        "#ryw_probe_misses",
        "#primary_write",
        "#primary_function",
        "#primary_lag",
        "#primary_ryw_timeout",
        "#primary_no_replica",
        "#primary_forced",
    ]);
    for db in shared.nodes.all() {
        if !db.has_replicas() {
            continue;
        }
        let ryw = db.ryw_fallbacks.load(std::sync::atomic::Ordering::Relaxed);
        let fallback = db.read_fallbacks.load(std::sync::atomic::Ordering::Relaxed);
        for n in db.status() {
            let mut row = vec![
                V::from(db.database.as_str()),
                V::from(n.index),
                V::from(n.addr.as_str()),
                V::from(n.role),
                V::from(if n.up { "t" } else { "f" }),
                V::from(if n.in_read_set { "t" } else { "f" }),
                V::from(n.why_not.clone()),
                V::from(format_lsn(n.lsn)),
                V::from(n.lag_bytes),
                V::from(format!("{:.3}", n.lag_seconds)),
                V::from(n.active),
                V::from(n.reads),
                V::from(n.writes),
                V::from(n.retries),
                V::from(ryw),
                V::from(fallback),
                V::from(n.probes),
                V::from(n.probe_misses),
            ];
            row.extend(n.to_primary.iter().map(|v| V::from(*v)));
            t.row(row);
        }
    }
    t
}
