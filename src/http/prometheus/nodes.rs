//! The per-node families of `/metrics`: health, role, replay position, lag and routing
//! counts of each node of a database with replicas.

use std::sync::atomic::Ordering::Relaxed;

use super::text::{family, sample, sample_f};
use crate::shared::Shared;

/// Per node of each database with replicas: health, role, position, lag and routing.
pub(super) fn render(o: &mut String, shared: &Shared) {
    let dbs: Vec<_> = shared
        .nodes
        .all()
        .into_iter()
        .filter(|d| d.has_replicas())
        .collect();
    let rows: Vec<_> = dbs
        .iter()
        .flat_map(|d| d.status().into_iter().map(move |n| (d, n)))
        .collect();
    let l = |d: &crate::router::DbNodes, n: &crate::router::NodeStatus| {
        vec![
            ("database", d.database.clone()),
            ("node", n.index.to_string()),
            ("addr", n.addr.clone()),
        ]
    };
    type Get = fn(&crate::router::NodeStatus) -> f64;
    let gauges: [(&str, &str, Get); 6] = [
        (
            "pgsluice_node_up",
            "1 when the node answered its last check.",
            |n| n.up as u64 as f64,
        ),
        (
            "pgsluice_node_is_primary",
            "1 for the node that takes writes now.",
            |n| (n.role == "primary") as u64 as f64,
        ),
        (
            "pgsluice_node_in_read_set",
            "1 when reads may go to the node now.",
            |n| n.in_read_set as u64 as f64,
        ),
        (
            "pgsluice_node_lsn",
            "WAL position: replay LSN of a replica, insert LSN of the primary (as a number).",
            |n| n.lsn as f64,
        ),
        (
            "pgsluice_node_lag_bytes",
            "Bytes of WAL the replica has yet to replay.",
            |n| n.lag_bytes as f64,
        ),
        (
            "pgsluice_node_lag_seconds",
            "Replay delay of the replica (0 when caught up).",
            |n| n.lag_seconds,
        ),
    ];
    for (name, help, get) in gauges {
        family(o, name, "gauge", help);
        for (d, n) in &rows {
            sample_f(o, name, &l(d, n), get(n));
        }
    }
    let counters: [(&str, &str, Get); 5] = [
        (
            "pgsluice_node_reads_total",
            "Transactions routed to the node as reads.",
            |n| n.reads as f64,
        ),
        (
            "pgsluice_node_ryw_probes_total",
            "Read-your-writes probes of the replica (asked for its replay LSN at checkout).",
            |n| n.probes as f64,
        ),
        (
            "pgsluice_node_ryw_probe_misses_total",
            "Probes that found the replica behind the session's write within ryw_max_wait.",
            |n| n.probe_misses as f64,
        ),
        (
            "pgsluice_node_writes_total",
            "Transactions routed to the node as writes.",
            |n| n.writes as f64,
        ),
        (
            "pgsluice_node_retries_total",
            "Reads the node refused as writes (25006) or lost, retried on the primary.",
            |n| n.retries as f64,
        ),
    ];
    for (name, help, get) in counters {
        family(o, name, "counter", help);
        for (d, n) in &rows {
            sample_f(o, name, &l(d, n), get(n));
        }
    }
    family(
        o,
        "pgsluice_node_primary_units_total",
        "counter",
        "Units of work the node served as the primary, by why they went there: write, \
         function (volatile or unknown), lag, ryw_timeout (probe), no_replica, forced \
         (hint, pgsluice.route, retry).",
    );
    for (d, n) in &rows {
        for why in crate::router::ToPrimary::ALL {
            let mut labels = l(d, n);
            labels.push(("reason", why.name().to_string()));
            sample(
                o,
                "pgsluice_node_primary_units_total",
                &labels,
                n.to_primary[why as usize],
            );
        }
    }
    family(
        o,
        "pgsluice_ryw_primary_reads_total",
        "counter",
        "Reads sent to the primary because no replica had replayed the session's own write.",
    );
    for d in &dbs {
        sample(
            o,
            "pgsluice_ryw_primary_reads_total",
            &[("database", d.database.clone())],
            d.ryw_fallbacks.load(Relaxed),
        );
    }
    family(
        o,
        "pgsluice_fallback_primary_reads_total",
        "counter",
        "Reads sent to the primary because no replica was usable.",
    );
    for d in &dbs {
        sample(
            o,
            "pgsluice_fallback_primary_reads_total",
            &[("database", d.database.clone())],
            d.read_fallbacks.load(Relaxed),
        );
    }
}
