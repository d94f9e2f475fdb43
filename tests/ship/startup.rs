//! What pgsluice says at start: an unreachable primary at WARN (and /readyz 503 until it
//! answers), and the primary's place in the read set as SHOW NODES shows it.

use std::time::Duration;

use super::common::{Cluster, Pooler, free_port, psql_ok, wait_until};
use super::http_get;

#[test]
fn unreachable_primary_is_logged_and_not_ready() {
    let http = free_port();
    let dead = free_port(); // reserved, nothing listens on it
    let p = Pooler::start(&format!(
        "[general]\nlisten_addr = \"{{LISTEN}}\"\n[[users]]\nname = \"app\"\npassword = \"app_pw\"\n\
         [databases.app]\nprimary = \"127.0.0.1:{dead}\"\n[admin]\nhttp_listen_addr = \"127.0.0.1:{http}\"\n"
    ));
    assert!(
        p.wait_for_log("primary unreachable at start", Duration::from_secs(15)),
        "no warning for an unreachable primary:\n{}",
        p.log()
    );
    let line = p
        .log()
        .lines()
        .find(|l| l.contains("primary unreachable at start"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{dead}")), "{line}");
    let (status, body) = http_get(http, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("database \"app\": primary unreachable"),
        "{body}"
    );
}

#[test]
fn reachable_primary_is_logged_and_ready() {
    let c = Cluster::start(0);
    let http = free_port();
    let config = c.pooler_config("transaction", "scram-sha-256", 2)
        + &format!("\n[admin]\nhttp_listen_addr = \"127.0.0.1:{http}\"\n");
    let p = Pooler::start(&config);
    assert!(
        p.wait_for_log("primary reachable", Duration::from_secs(15)),
        "{}",
        p.log()
    );
    assert!(!p.log().contains("unreachable"), "{}", p.log());
    assert_eq!(http_get(http, "/readyz").0, 200);
}

/// The startup log and SHOW NODES agree: with primary_reads = "fallback" (the default)
/// the primary is not in the read set, and the log says so.
#[test]
fn startup_log_and_show_nodes_agree_on_the_read_set() {
    let c = Cluster::start(1);
    let config = c.pooler_config("transaction", "scram-sha-256", 2).replacen(
        "[auth]\n",
        "[auth]\nadmin_users = [\"app\"]\n",
        1,
    );
    let p = Pooler::start(&config);
    let admin = p.url("app", "app_pw", "pgsluice");
    let primary = format!("127.0.0.1:{}", c.primary_port);
    let mut rows = String::new();
    let listed = wait_until(Duration::from_secs(20), || {
        rows = psql_ok(&admin, "SHOW NODES");
        rows.lines()
            .any(|l| l.starts_with("app|1|") && l.split('|').nth(5) == Some("t"))
    });
    assert!(listed, "replica never joined the read set:\n{rows}");
    let primary_row: Vec<&str> = rows
        .lines()
        .find(|l| l.starts_with("app|0|"))
        .map(|l| l.split('|').collect())
        .unwrap_or_default();
    assert_eq!(
        primary_row.get(3..6),
        Some(&["primary", "t", "f"][..]),
        "{rows}"
    );
    let log = p.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&primary) && l.contains("database=\"app\""))
        .filter(|l| l.contains("read set") || l.contains("is the primary"))
        .collect();
    assert!(
        said.iter()
            .any(|l| l.contains("node is the primary, not in the read set")),
        "{log}"
    );
    assert!(
        !said.iter().any(|l| l.contains("node is in the read set")),
        "the log puts the primary in the read set: {said:#?}"
    );
}
