//! What the routing tests share: statement logs on every node (where a statement ran),
//! a psql session of separate Queries, the pooler config with routing, and waiting for
//! the read set.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Cluster, psql_ok, wait_until};

pub const NODES: [&str; 3] = ["primary", "replica1", "replica2"];

/// Turns on statement logging on every node (ALTER SYSTEM works on a standby too).
pub fn log_statements(c: &Cluster) {
    for n in &NODES[..=c.replica_ports.len()] {
        let url = c.node_url(n, "postgres", "", "postgres");
        psql_ok(&url, "ALTER SYSTEM SET log_statement = 'all'");
        psql_ok(&url, "SELECT pg_reload_conf()");
    }
}

/// The nodes whose log mentions `tag`.
pub fn nodes_that_ran(c: &Cluster, tag: &str) -> Vec<&'static str> {
    NODES[..=c.replica_ports.len()]
        .iter()
        .filter(|n| {
            std::fs::read_to_string(c.dir.join(format!("{n}.log")))
                .unwrap_or_default()
                .contains(tag)
        })
        .copied()
        .collect()
}

/// Runs each command as its own Query in one psql session (errors don't stop it).
pub fn psql_session(url: &str, commands: &[String], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60", "/usr/bin/psql", "-X", "-A", "-t"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(url)
        .env_remove("PGPASSWORD")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run psql");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn routing_config(c: &Cluster, extra: &str) -> String {
    format!(
        "{}\n[routing]\nread_only_functions = [\"my_reader\"]\n{extra}\n",
        c.pooler_config("transaction", "scram-sha-256", 4)
    )
}

/// Waits until the pooler's monitor put both replicas in the read set: fresh sessions'
/// reads reach both.
pub fn wait_read_set(c: &Cluster, url: &str) {
    let mut seen = HashSet::new();
    let ok = wait_until(Duration::from_secs(20), || {
        let port = psql_ok(url, "SELECT inet_server_port()");
        seen.insert(port);
        c.replica_ports
            .iter()
            .all(|p| seen.contains(&p.to_string()))
    });
    assert!(ok, "reads never reached every replica: {seen:?}");
}
