//! SHOW POOLS, SHOW STATS (and its totals/averages variants, SHOW TOTALS) and SHOW
//! LATENCY.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::super::table::{Table, V};
use super::super::view;
use crate::metrics::Totals;
use crate::shared::Shared;

/// SHOW POOLS: one row per pool (database, user, node).
///
/// - `cl_active` counts logged-in clients not waiting (holding a server or not), as
///   PgBouncer does; `cl_waiting` those waiting for a server, including those held by PAUSE.
/// - `cl_active_cancel_req`, `cl_waiting_cancel_req`, `sv_active_cancel`,
///   `sv_being_canceled`: always 0; pgsluice forwards a cancel request at once on its own
///   connection and keeps no list of them.
/// - `sv_used`, `sv_tested`: always 0; a server goes back to the idle list as soon as it is
///   known clean, and `server_check_query` runs within the checkout that takes it.
/// - `sv_login`: connections being opened, or handed to a waiting client that has not yet
///   started using it.
/// - `node` (ours): 0 is the primary.
/// - `reserve_pool`, `reserve_used` (ours): the reserve pool's size, and its connections
///   open now (beyond the pool size).
pub(super) fn pools(shared: &Shared) -> Table {
    let snap = shared.snapshot.load();
    let config = &snap.config;
    let mut t = Table::new(&[
        "database",
        "user",
        "#cl_active",
        "#cl_waiting",
        "#cl_active_cancel_req",
        "#cl_waiting_cancel_req",
        "#sv_active",
        "#sv_active_cancel",
        "#sv_being_canceled",
        "#sv_idle",
        "#sv_used",
        "#sv_tested",
        "#sv_login",
        "#maxwait",
        "#maxwait_us",
        "pool_mode",
        "#node",
        "#reserve_pool",
        "#reserve_used",
    ]);
    for p in view::pools(shared) {
        let mode = config.database(&p.key.database).map(|db| {
            let m = config.pool_mode(&db, config.user(&p.key.user));
            format!("{m:?}").to_ascii_lowercase()
        });
        t.row(vec![
            V::from(p.key.database.as_str()),
            V::from(p.key.user.as_str()),
            V::from(p.cl_active + p.cl_idle),
            V::from(p.cl_waiting),
            V::from(0u8),
            V::from(0u8),
            V::from(p.sv_active),
            V::from(0u8),
            V::from(0u8),
            V::from(p.sv_idle),
            V::from(0u8),
            V::from(0u8),
            V::from(p.sv_login),
            V::from(p.maxwait_us / 1_000_000),
            V::from(p.maxwait_us % 1_000_000),
            V::from(mode),
            V::from(p.key.node),
            V::from(p.reserve),
            V::from(p.reserve_used),
        ]);
    }
    t
}

/// Statistics by database: every configured database, plus any that has statistics
/// left from before a reload removed it.
fn by_database(shared: &Shared) -> BTreeMap<String, (Totals, Totals, Duration)> {
    let now = Instant::now();
    let mut out: BTreeMap<String, (Totals, Totals, Duration)> = shared
        .snapshot
        .load()
        .config
        .databases
        .keys()
        .map(|name| {
            let since = now.saturating_duration_since(shared.metrics.started);
            (name.clone(), (Totals::default(), Totals::default(), since))
        })
        .collect();
    for m in shared.metrics.all() {
        let (window, len) = m.window(now);
        let e = out
            .entry(m.key.database.clone())
            .or_insert_with(|| (Totals::default(), Totals::default(), len));
        e.0.add(&m.totals());
        e.1.add(&window);
        e.2 = len;
    }
    out
}

/// Per-second and per-item averages over a window, PgBouncer's way: counts and bytes
/// per second, query and transaction time per query and transaction (µs), wait time per
/// second (µs of waiting per second).
struct Averages {
    xact_count: u64,
    query_count: u64,
    recv: u64,
    sent: u64,
    xact_time: u64,
    query_time: u64,
    wait_time: u64,
}

fn averages(w: &Totals, len: Duration) -> Averages {
    let secs = len.as_secs_f64().max(1e-3);
    let per_sec = |v: u64| (v as f64 / secs).round() as u64;
    Averages {
        xact_count: per_sec(w.xacts),
        query_count: per_sec(w.queries),
        recv: per_sec(w.bytes_in),
        sent: per_sec(w.bytes_out),
        xact_time: w.xact_us.checked_div(w.xacts).unwrap_or(0),
        query_time: w.query_us.checked_div(w.queries).unwrap_or(0),
        wait_time: per_sec(w.wait_us),
    }
}

/// SHOW STATS: totals since start and averages over the last one to two
/// `metrics.stats_period`s, per database. `total_received` counts bytes pgsluice read
/// from clients, `total_sent` bytes it read from servers for them.
pub(super) fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "database",
        "#total_xact_count",
        "#total_query_count",
        "#total_received",
        "#total_sent",
        "#total_xact_time",
        "#total_query_time",
        "#total_wait_time",
        "#avg_xact_count",
        "#avg_query_count",
        "#avg_recv",
        "#avg_sent",
        "#avg_xact_time",
        "#avg_query_time",
        "#avg_wait_time",
    ]);
    for (db, (tot, win, len)) in by_database(shared) {
        let a = averages(&win, len);
        t.row(vec![
            V::from(db),
            V::from(tot.xacts),
            V::from(tot.queries),
            V::from(tot.bytes_in),
            V::from(tot.bytes_out),
            V::from(tot.xact_us),
            V::from(tot.query_us),
            V::from(tot.wait_us),
            V::from(a.xact_count),
            V::from(a.query_count),
            V::from(a.recv),
            V::from(a.sent),
            V::from(a.xact_time),
            V::from(a.query_time),
            V::from(a.wait_time),
        ]);
    }
    t
}

const SHORT_COLUMNS: [&str; 8] = [
    "database",
    "#xact_count",
    "#query_count",
    "#bytes_received",
    "#bytes_sent",
    "#xact_time",
    "#query_time",
    "#wait_time",
];

/// SHOW STATS_TOTALS: the totals half of SHOW STATS.
pub(super) fn stats_totals(shared: &Shared) -> Table {
    let mut t = Table::new(&SHORT_COLUMNS);
    for (db, (tot, _, _)) in by_database(shared) {
        t.row(vec![
            V::from(db),
            V::from(tot.xacts),
            V::from(tot.queries),
            V::from(tot.bytes_in),
            V::from(tot.bytes_out),
            V::from(tot.xact_us),
            V::from(tot.query_us),
            V::from(tot.wait_us),
        ]);
    }
    t
}

/// SHOW STATS_AVERAGES: the averages half of SHOW STATS.
pub(super) fn stats_averages(shared: &Shared) -> Table {
    let mut t = Table::new(&SHORT_COLUMNS);
    for (db, (_, win, len)) in by_database(shared) {
        let a = averages(&win, len);
        t.row(vec![
            V::from(db),
            V::from(a.xact_count),
            V::from(a.query_count),
            V::from(a.recv),
            V::from(a.sent),
            V::from(a.xact_time),
            V::from(a.query_time),
            V::from(a.wait_time),
        ]);
    }
    t
}

/// SHOW TOTALS: SHOW STATS over every database, as (name, value) rows.
pub(super) fn totals(shared: &Shared) -> Table {
    let mut tot = Totals::default();
    let mut win = Totals::default();
    let mut len = Duration::ZERO;
    for (_, (t, w, l)) in by_database(shared) {
        tot.add(&t);
        win.add(&w);
        len = len.max(l);
    }
    let a = averages(&win, len);
    let mut t = Table::new(&["name", "#value"]);
    for (name, v) in [
        ("total_xact_count", tot.xacts),
        ("total_query_count", tot.queries),
        ("total_received", tot.bytes_in),
        ("total_sent", tot.bytes_out),
        ("total_xact_time", tot.xact_us),
        ("total_query_time", tot.query_us),
        ("total_wait_time", tot.wait_us),
        ("avg_xact_count", a.xact_count),
        ("avg_query_count", a.query_count),
        ("avg_recv", a.recv),
        ("avg_sent", a.sent),
        ("avg_xact_time", a.xact_time),
        ("avg_query_time", a.query_time),
        ("avg_wait_time", a.wait_time),
    ] {
        t.row(vec![V::from(name), V::from(v)]);
    }
    t
}

/// SHOW LATENCY (ours): per pool, p50/p95/p99 of query time, transaction time and pool
/// wait time in microseconds, over the last one to two `metrics.stats_period`s
/// (`window_s` says how long), from histograms with ~25 % wide buckets (values are
/// interpolated inside a bucket). NULL when nothing was measured in the window.
pub(super) fn latency(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "database",
        "user",
        "#node",
        "#window_s",
        "#queries",
        "#query_p50_us",
        "#query_p95_us",
        "#query_p99_us",
        "#xacts",
        "#xact_p50_us",
        "#xact_p95_us",
        "#xact_p99_us",
        "#waits",
        "#wait_p50_us",
        "#wait_p95_us",
        "#wait_p99_us",
    ]);
    let now = Instant::now();
    for m in shared.metrics.all() {
        let (w, len) = m.window(now);
        let q = |c: &crate::metrics::histogram::Counts, p: f64| V::from(c.quantile_us(p));
        t.row(vec![
            V::from(m.key.database.as_str()),
            V::from(m.key.user.as_str()),
            V::from(m.key.node),
            V::from(len.as_secs()),
            V::from(w.query.count()),
            q(&w.query, 0.50),
            q(&w.query, 0.95),
            q(&w.query, 0.99),
            V::from(w.xact.count()),
            q(&w.xact, 0.50),
            q(&w.xact, 0.95),
            q(&w.xact, 0.99),
            V::from(w.wait.count()),
            q(&w.wait, 0.50),
            q(&w.wait, 0.95),
            q(&w.wait, 0.99),
        ]);
    }
    t
}
