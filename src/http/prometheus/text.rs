//! The Prometheus text exposition format: HELP/TYPE lines, label escaping, and samples,
//! counters and histograms over the pools.

use std::fmt::Write as _;

use crate::admin::view::PoolView;
use crate::metrics::histogram::{Counts, PROMETHEUS_LE_US};
use crate::metrics::pool::Totals;

pub(super) fn labels<'a>(
    p: &'a PoolView,
    node: bool,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, String)> {
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

pub(super) fn family(o: &mut String, name: &str, kind: &str, help: &str) {
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

pub(super) fn sample(
    o: &mut String,
    name: &str,
    labels: &[(&str, String)],
    v: impl std::fmt::Display,
) {
    let _ = writeln!(o, "{name}{} {v}", label_text(labels));
}

pub(super) fn sample_f(o: &mut String, name: &str, labels: &[(&str, String)], v: f64) {
    let _ = writeln!(o, "{name}{} {v}", label_text(labels));
}

pub(super) fn counter(
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

pub(super) fn histogram(
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
