//! The Grafana dashboard in deploy/grafana/ queries only metrics a real /metrics answer
//! has: pgsluice runs with the HTTP endpoints on, in front of a primary and a replica,
//! serves reads, writes and an error, and is scraped.

use std::collections::BTreeSet;
use std::time::Duration;

use super::common::{Cluster, Pooler, free_port, psql, psql_ok, wait_until};
use super::http_get;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/pgsluice.json");

/// Every `pgsluice_...` name in the dashboard's text (its queries are the only place
/// metric names appear).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(DASHBOARD).expect("read the dashboard");
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("pgsluice_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Names of the samples in a Prometheus text exposition.
fn sample_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_dashboard_metric_is_served() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 15, "{wanted:?}");
    let valid = std::process::Command::new("python3")
        .args(["-m", "json.tool", DASHBOARD])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run python3");
    assert!(valid.success(), "{DASHBOARD} is not valid JSON");

    let c = Cluster::start(1);
    let http = free_port();
    let p = Pooler::start(
        &(c.pooler_config("transaction", "scram-sha-256", 2)
            + &format!("\n[admin]\nhttp_listen_addr = \"127.0.0.1:{http}\"\n")),
    );
    let url = p.url("app", "app_pw", "app");
    psql_ok(&url, "CREATE TABLE IF NOT EXISTS dash (x int)");
    for _ in 0..5 {
        psql_ok(&url, "INSERT INTO dash VALUES (1)");
        // Another connection than the INSERT's: the primary, where the table surely is
        // (a replica may not have replayed the CREATE yet).
        psql_ok(&url, "/* pgsluice: primary */ SELECT count(*) FROM dash");
    }
    let failed = psql(&url, "SELECT 1/0");
    assert!(!failed.status.success());
    let mut missing = BTreeSet::new();
    let served = wait_until(Duration::from_secs(20), || {
        let (status, body) = http_get(http, "/metrics");
        let have = sample_names(&body);
        missing = wanted
            .iter()
            .filter(|m| status != 200 || !have.contains(*m))
            .cloned()
            .collect();
        missing.is_empty()
    });
    assert!(
        served,
        "the dashboard queries metrics /metrics does not have: {missing:?}"
    );
}
