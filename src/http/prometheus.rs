//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Labels: `database`, `user`, and `node` where the figure belongs to one node's pool
//! (0 is the primary; replicas are numbered from 1 once routing sends reads to them).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::admin::view::{self, PoolView};
use crate::metrics::histogram::{Counts, PROMETHEUS_LE_US};
use crate::metrics::pool::Totals;
use crate::shared::{Phase, Shared};

/// The text of a scrape.
pub fn render(shared: &Shared) -> String {
    let pools: Vec<(PoolView, Totals)> = view::pools(shared)
        .into_iter()
        .map(|p| {
            let t = p.metrics.totals();
            (p, t)
        })
        .collect();
    let mut out = String::with_capacity(8192 + pools.len() * 8192);
    let o = &mut out;

    family(o, "pgsluice_up", "gauge", "1 while pgsluice runs.");
    sample(o, "pgsluice_up", &[], 1);
    let draining = *shared.drain.borrow() != Phase::Running;
    family(
        o,
        "pgsluice_draining",
        "gauge",
        "1 after SIGTERM or SHUTDOWN, while clients are let go.",
    );
    sample(o, "pgsluice_draining", &[], draining as u64);
    family(
        o,
        "pgsluice_connections",
        "gauge",
        "Client connections, logged in or not (the max_client_conn count).",
    );
    sample(o, "pgsluice_connections", &[], shared.clients.load(Relaxed));

    family(
        o,
        "pgsluice_client_panics_total",
        "counter",
        "Client tasks that ended in a panic (a bug: each is logged at ERROR with its client id).",
    );
    sample(
        o,
        "pgsluice_client_panics_total",
        &[],
        shared.metrics.panics.load(Relaxed),
    );

    family(
        o,
        "pgsluice_client_connections",
        "gauge",
        "Logged-in clients by state: active (holding a server), idle, waiting (for a server).",
    );
    for (p, _) in &pools {
        for (state, n) in [
            ("active", p.cl_active),
            ("idle", p.cl_idle),
            ("waiting", p.cl_waiting),
        ] {
            sample(
                o,
                "pgsluice_client_connections",
                &labels(p, false, &[("state", state)]),
                n,
            );
        }
    }
    family(
        o,
        "pgsluice_client_wait_seconds_max",
        "gauge",
        "How long the longest-waiting client of the pool has waited for a server.",
    );
    for (p, _) in &pools {
        sample_f(
            o,
            "pgsluice_client_wait_seconds_max",
            &labels(p, false, &[]),
            p.maxwait_us as f64 / 1e6,
        );
    }
    family(
        o,
        "pgsluice_server_connections",
        "gauge",
        "Server connections by state: active (held by a client), idle, login (being opened).",
    );
    for (p, _) in &pools {
        for (state, n) in [
            ("active", p.sv_active),
            ("idle", p.sv_idle),
            ("login", p.sv_login),
        ] {
            sample(
                o,
                "pgsluice_server_connections",
                &labels(p, true, &[("state", state)]),
                n,
            );
        }
    }
    family(
        o,
        "pgsluice_pool_size",
        "gauge",
        "Configured server connections per pool.",
    );
    for (p, _) in &pools {
        sample(o, "pgsluice_pool_size", &labels(p, true, &[]), p.size);
    }
    family(
        o,
        "pgsluice_reserve_pool_size",
        "gauge",
        "Extra server connections a pool may open for clients waiting longer than reserve_pool_timeout.",
    );
    for (p, _) in &pools {
        sample(
            o,
            "pgsluice_reserve_pool_size",
            &labels(p, true, &[]),
            p.reserve,
        );
    }
    family(
        o,
        "pgsluice_reserve_pool_connections",
        "gauge",
        "Server connections open beyond the pool size (from the reserve pool).",
    );
    for (p, _) in &pools {
        sample(
            o,
            "pgsluice_reserve_pool_connections",
            &labels(p, true, &[]),
            p.reserve_used,
        );
    }

    counter(
        o,
        &pools,
        "pgsluice_queries_total",
        "Queries served (one per ReadyForQuery).",
        |t| t.queries,
    );
    counter(
        o,
        &pools,
        "pgsluice_transactions_total",
        "Transactions served (ended with the server idle).",
        |t| t.xacts,
    );
    counter(
        o,
        &pools,
        "pgsluice_client_received_bytes_total",
        "Bytes read from clients.",
        |t| t.bytes_in,
    );
    counter(
        o,
        &pools,
        "pgsluice_client_sent_bytes_total",
        "Bytes read from servers and relayed to clients.",
        |t| t.bytes_out,
    );

    family(
        o,
        "pgsluice_server_errors_total",
        "counter",
        "ErrorResponses from servers relayed to clients, by SQLSTATE class.",
    );
    for (p, _) in &pools {
        for (class, n) in p.metrics.errors() {
            sample(
                o,
                "pgsluice_server_errors_total",
                &labels(p, true, &[("class", &class)]),
                n,
            );
        }
    }
    let pool_counter =
        |o: &mut String, name: &str, help: &str, f: &dyn Fn(&crate::pool::PoolStats) -> u64| {
            family(o, name, "counter", help);
            for (p, _) in &pools {
                if let Some(pool) = &p.pool {
                    sample(o, name, &labels(p, true, &[]), f(&pool.stats));
                }
            }
        };
    pool_counter(
        o,
        "pgsluice_pool_wait_timeouts_total",
        "Checkouts that gave up after query_wait_timeout.",
        &|s| s.wait_timeouts.load(Relaxed),
    );
    pool_counter(
        o,
        "pgsluice_server_connects_total",
        "Server connections opened.",
        &|s| s.connects.load(Relaxed),
    );
    pool_counter(
        o,
        "pgsluice_server_connect_failures_total",
        "Server connections that failed to open.",
        &|s| s.connect_failures.load(Relaxed),
    );

    histogram(
        o,
        &pools,
        "pgsluice_query_duration_seconds",
        "Time from a query's start to its ReadyForQuery, excluding the wait for a server.",
        |t| &t.query,
    );
    histogram(
        o,
        &pools,
        "pgsluice_transaction_duration_seconds",
        "Time a transaction held its server connection.",
        |t| &t.xact,
    );
    histogram(
        o,
        &pools,
        "pgsluice_pool_wait_duration_seconds",
        "Time clients waited for a server connection (including PAUSE).",
        |t| &t.wait,
    );

    let snap = shared.snapshot.load();
    family(
        o,
        "pgsluice_database_paused",
        "gauge",
        "1 while the database is paused (PAUSE, KILL).",
    );
    for name in snap.config.databases.keys() {
        sample(
            o,
            "pgsluice_database_paused",
            &[("database", name.clone())],
            shared.admin.is_paused(name) as u64,
        );
    }
    family(
        o,
        "pgsluice_database_disabled",
        "gauge",
        "1 while new logins to the database are refused (DISABLE).",
    );
    for name in snap.config.databases.keys() {
        sample(
            o,
            "pgsluice_database_disabled",
            &[("database", name.clone())],
            shared.admin.is_disabled(name) as u64,
        );
    }
    family(
        o,
        "pgsluice_prepared_statements",
        "gauge",
        "Distinct prepared statements pgsluice maps to server-side names.",
    );
    sample(
        o,
        "pgsluice_prepared_statements",
        &[],
        shared.statements.len(),
    );
    nodes(o, shared);
    out
}

/// Per node of each database with replicas: health, role, position, lag and routing.
fn nodes(o: &mut String, shared: &Shared) {
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

fn labels<'a>(p: &'a PoolView, node: bool, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, String)> {
    let mut v = vec![
        ("database", p.key.database.clone()),
        ("user", p.key.user.clone()),
    ];
    if node {
        v.push(("node", p.key.node.to_string()));
    }
    v.extend(extra.iter().map(|(k, val)| (*k, val.to_string())));
    v
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Label values escaped as the format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &[(&str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn sample(o: &mut String, name: &str, labels: &[(&str, String)], v: impl std::fmt::Display) {
    let _ = writeln!(o, "{name}{} {v}", label_text(labels));
}

fn sample_f(o: &mut String, name: &str, labels: &[(&str, String)], v: f64) {
    let _ = writeln!(o, "{name}{} {v}", label_text(labels));
}

fn counter(
    o: &mut String,
    pools: &[(PoolView, Totals)],
    name: &str,
    help: &str,
    f: impl Fn(&Totals) -> u64,
) {
    family(o, name, "counter", help);
    for (p, t) in pools {
        sample(o, name, &labels(p, true, &[]), f(t));
    }
}

fn histogram(
    o: &mut String,
    pools: &[(PoolView, Totals)],
    name: &str,
    help: &str,
    f: impl Fn(&Totals) -> &Counts,
) {
    family(o, name, "histogram", help);
    for (p, t) in pools {
        let c = f(t);
        let base = labels(p, true, &[]);
        for le in PROMETHEUS_LE_US {
            let mut l = base.clone();
            l.push(("le", (le as f64 / 1e6).to_string()));
            sample(o, &format!("{name}_bucket"), &l, c.cumulative(le));
        }
        let mut l = base.clone();
        l.push(("le", "+Inf".to_string()));
        sample(o, &format!("{name}_bucket"), &l, c.count());
        sample_f(o, &format!("{name}_sum"), &base, c.sum_us as f64 / 1e6);
        sample(o, &format!("{name}_count"), &base, c.count());
    }
}
