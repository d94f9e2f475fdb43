//! The admin console and the HTTP endpoints as tests see them: a config with console
//! users, a SHOW's rows by column name, one HTTP GET, and `/metrics` parsed by the
//! reference Prometheus text parser (Python's `prometheus_client`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use tokio_postgres::SimpleQueryMessage;

use super::pg::{POLL, STEP};
use super::{Cluster, free_port};

/// The cluster's usual config (transaction mode unless `mode` says otherwise) with admin
/// user `admin`/`admin_pw`, stats user `watcher`/`watcher_pw`, and `extra` appended.
pub fn console_config(c: &Cluster, mode: &str, pool_size: u32, extra: &str) -> String {
    let base = c.pooler_config(mode, "scram-sha-256", pool_size);
    let base = base.replacen(
        "[auth]\ntype = \"scram-sha-256\"\n",
        "[auth]\ntype = \"scram-sha-256\"\nadmin_users = [\"admin\"]\nstats_users = [\"watcher\"]\n",
        1,
    );
    format!(
        "{base}\n[[users]]\nname = \"admin\"\npassword = \"admin_pw\"\n\n\
         [[users]]\nname = \"watcher\"\npassword = \"watcher_pw\"\n\n{extra}\n"
    )
}

/// `[admin]` with the HTTP endpoints on a free port; returns (section, port).
pub fn http_section() -> (String, u16) {
    let port = free_port();
    (
        format!("[admin]\nhttp_listen_addr = \"127.0.0.1:{port}\"\n"),
        port,
    )
}

/// A result set: column names and rows of (column → value).
#[derive(Debug)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<HashMap<String, Option<String>>>,
}

impl Rows {
    /// The rows whose `col` equals `val`.
    pub fn with(&self, col: &str, val: &str) -> Vec<&HashMap<String, Option<String>>> {
        self.rows
            .iter()
            .filter(|r| r.get(col).and_then(|v| v.as_deref()) == Some(val))
            .collect()
    }

    /// `col` of the single row whose `key` column equals `val`, as a number.
    pub fn num(&self, key: &str, val: &str, col: &str) -> i64 {
        let rows = self.with(key, val);
        assert_eq!(rows.len(), 1, "one row with {key} = {val} in {self:#?}");
        rows[0]
            .get(col)
            .unwrap_or_else(|| panic!("no column {col} in {self:#?}"))
            .as_deref()
            .unwrap_or_else(|| panic!("{col} is NULL in {self:#?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{col}: {e} in {self:#?}"))
    }
}

/// The rows of a simple query (the last result set when there are several).
pub fn rows_of(msgs: Vec<SimpleQueryMessage>) -> Rows {
    let mut out = Rows {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                out.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                let row = r
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), r.get(i).map(str::to_string)))
                    .collect();
                out.rows.push(row);
            }
            _ => {}
        }
    }
    out
}

/// One HTTP/1.1 GET on 127.0.0.1:`port`: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    s.set_read_timeout(Some(STEP)).expect("timeout");
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
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// One sample of a scrape: name, labels, value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// Parses a scrape with Python's `prometheus_client` (the reference text parser).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = "\x1f".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(s.name, labels, repr(float(s.value)), sep="\t")
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (pip install prometheus_client):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap_or_default().to_string();
            let labels = f
                .next()
                .unwrap_or_default()
                .split('\x1f')
                .filter(|s| !s.is_empty())
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let value = f.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// Scrapes `/metrics` on `port` until `settled` holds for a scrape or [`STEP`] passes; the
/// last scrape either way (the caller asserts on it). Counters are final once a client
/// has its answer; state gauges may lag it by a moment (see [`super::pg::Pg::show_until`]).
pub fn scrape_until(port: u16, settled: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let (status, body) = http_get(port, "/metrics");
        assert_eq!(status, 200, "{body}");
        let samples = parse_prometheus(&body);
        if settled(&samples) || std::time::Instant::now() >= deadline {
            return samples;
        }
        std::thread::sleep(POLL);
    }
}

/// Like [`metric`], but `None` unless exactly one sample matches.
pub fn metric_opt(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples.iter().filter(|s| s.name == name).filter(|s| {
        want.iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    });
    match (found.next(), found.next()) {
        (Some(s), None) => Some(s.value),
        _ => None,
    }
}

/// The value of `name` whose labels include all of `want`.
pub fn metric(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0].value
}
