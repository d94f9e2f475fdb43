//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Labels: `database`, `user`, and `node` where the figure belongs to one node's pool
//! (0 is the primary; replicas are numbered from 1 once routing sends reads to them).
//!
//! This file renders the process and per-pool families; `nodes.rs` the per-node ones,
//! `text.rs` the exposition format itself.

mod nodes;
mod text;

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::view::{self, PoolView};
use crate::metrics::pool::Totals;
use crate::shared::{Phase, Shared};
use text::{counter, family, histogram, labels, sample, sample_f};

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
        "pgsluice_parked_clients",
        "gauge",
        "Logged-in clients idle past park_idle_after, waiting with no task of their own.",
    );
    sample(
        o,
        "pgsluice_parked_clients",
        &[],
        shared.parked.load(Relaxed),
    );
    family(
        o,
        "pgsluice_client_parks_total",
        "counter",
        "Times an idle client was parked (a rate close to the transactions': park_idle_after is short for the clients' pauses).",
    );
    sample(
        o,
        "pgsluice_client_parks_total",
        &[],
        shared.parks.load(Relaxed),
    );

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
    nodes::render(o, shared);
    out
}
