//! pgbench in tests: its tables on the primary, and a run through pgsluice whose report
//! is checked (success, no failed transaction, some processed, no error on stderr).

use std::process::Command;

use super::{Cluster, Pooler};

/// `pgbench -i -s 1` directly on the primary (as app, who then owns the tables).
pub fn pgbench_init(cluster: &Cluster) {
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "60",
            "pgbench",
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &cluster.primary_port.to_string(), "-U", "app", "app"])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench -i");
    assert!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a pgbench run printed.
pub struct Report {
    pub stdout: String,
    /// Arguments, exit status, stdout and stderr: for failure messages.
    pub text: String,
}

impl Report {
    /// The number after `prefix` on the line that starts with it.
    pub fn field(&self, prefix: &str) -> f64 {
        self.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output: {}", self.text))
    }
}

/// Runs `pgbench ARGS -h 127.0.0.1 -p PORT -U app app` through `pooler` (as app/app_pw,
/// `limit_secs` bound) and checks its report: it succeeded, no transaction failed, some
/// were processed, and stderr has no error.
pub fn pgbench_through(pooler: &Pooler, args: &[&str], limit_secs: u32) -> Report {
    let out = Command::new("timeout")
        .args(["-k", "5", &limit_secs.to_string(), "pgbench"])
        .args(args)
        .args(["-h", "127.0.0.1", "-p", &pooler.port.to_string()])
        .args(["-U", "app", "app"])
        .env("PGPASSWORD", "app_pw")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = Report {
        text: format!("pgbench {args:?}: {}\n{stdout}\n{stderr}", out.status),
        stdout,
    };
    assert!(out.status.success(), "pgbench failed: {}", report.text);
    assert_eq!(
        report.field("number of failed transactions:"),
        0.0,
        "{}",
        report.text
    );
    assert!(
        report.field("number of transactions actually processed:") > 0.0,
        "{}",
        report.text
    );
    assert!(!stderr.contains("error"), "{}", report.text);
    report
}
