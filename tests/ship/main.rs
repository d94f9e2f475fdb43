//! Issue 13 ("ship it"): the command line, configuration from a container's environment,
//! the PgBouncer import, the startup log and /readyz, and the Grafana dashboard's metrics,
//! each against a real pgsluice and, where it serves, a real PostgreSQL cluster.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod dashboard;
mod import;
mod startup;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the pgsluice binary with `args` and `envs`, no inherited PGSLUICE_* variables,
/// no standard input, killed after 30 s.
pub fn pgsluice(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "30"])
        .arg(env!("CARGO_BIN_EXE_pgsluice"))
        .args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PGSLUICE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run pgsluice")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One HTTP/1.1 GET on 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Writes `text` to a new file `name` in a fresh directory; returns its path.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = common::unique_path("ship");
    std::fs::create_dir_all(&dir).expect("create dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// `pgsluice --check-config --config FILE`, which must pass.
pub fn assert_config_ok(path: &Path, envs: &[(&str, &str)]) {
    let out = pgsluice(
        &["--check-config", "--config", &path.display().to_string()],
        envs,
    );
    assert!(
        out.status.success(),
        "--check-config {}: {}\n{}",
        path.display(),
        stderr(&out),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}
