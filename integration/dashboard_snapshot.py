#!/usr/bin/env python3
"""Renders the panels of deploy/grafana/pgsluice.json with matplotlib, from real /metrics
scrapes: a throwaway primary + replica (cluster.sh; the replica applies WAL 2 s late),
pgsluice in front with its HTTP endpoints on, pgbench read-only and read-write clients
and a trickle of failing queries for SECONDS, /metrics scraped every 2 s. Each panel
computes what its PromQL query asks (rates of counters, quantiles of histogram buckets,
gauges) from those scrapes. It is not Grafana: no Grafana server is available here.

    python3 integration/dashboard_snapshot.py [--seconds 90] [--out deploy/grafana/pgsluice-dashboard.png]

Needs the release binary (cargo build --release), PostgreSQL 15, pgbench, psql,
prometheus_client and matplotlib (pip install matplotlib).
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(snap, name, **match):
    """Sum of a metric's samples whose labels include `match` (by label → value)."""
    out = 0.0
    for (n, labels), v in snap.items():
        d = dict(labels)
        if n == name and all(d.get(k) == val for k, val in match.items()):
            out += v
    return out


def label_values(snaps, name, label):
    vals = set()
    for snap in snaps:
        for (n, labels), _ in snap.items():
            if n == name and label in dict(labels):
                vals.add(dict(labels)[label])
    return sorted(vals)


def quantile(q, prev, cur, name):
    """histogram_quantile(q, sum by (le) (rate(name_bucket[...]))) between two scrapes."""
    buckets = {}
    for (n, labels), v in cur.items():
        if n == name + "_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = buckets.get(le, 0.0) + v - prev.get((n, labels), 0.0)
    if not buckets:
        return float("nan")
    les = sorted(buckets)
    count = buckets[les[-1]]
    if count <= 0:
        return float("nan")
    rank, lower, below = q * count, 0.0, 0.0
    for le in les:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            width = buckets[le] - below
            return lower + (le - lower) * ((rank - below) / width if width else 1.0)
        lower, below = le, buckets[le]
    return lower


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--out", default=os.path.join(ROOT, "deploy/grafana/pgsluice-dashboard.png"))
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = tempfile.mkdtemp(prefix="pgsluice-dash.")
    cluster = os.path.join(work, "cluster")
    env = dict(os.environ)
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "integration/cluster.sh"), "start", cluster,
         "--replicas", "1", "--delay", "2", "--watch-pid", str(os.getpid())],
        check=True, capture_output=True, text=True).stdout
    ports = dict(line.split("=", 1) for line in out.split() if "=" in line)
    primary, replica = ports["PRIMARY_PORT"], ports["REPLICA_PORTS"].strip('"')
    listen, http = free_port(), free_port()
    config = os.path.join(work, "pooler.toml")
    with open(config, "w") as f:
        f.write(f"""[general]
listen_addr = "127.0.0.1:{listen}"
default_pool_size = 4
[[users]]
name = "app"
password = "app_pw"
[databases.app]
primary = "127.0.0.1:{primary}"
replicas = ["127.0.0.1:{replica}"]
[admin]
http_listen_addr = "127.0.0.1:{http}"
""")
    pooler = subprocess.Popen([os.path.join(ROOT, "target/release/pgsluice"), "--config", config],
                              stderr=open(os.path.join(work, "pgsluice.log"), "w"))
    procs = [pooler]
    try:
        time.sleep(1)
        env["PGPASSWORD"] = "app_pw"
        url = ["-h", "127.0.0.1", "-U", "app"]
        subprocess.run(["pgbench", "-i", "-q", "-s", "2", "-h", "127.0.0.1", "-p", primary, "-U", "app", "app"],
                       check=True, env=env, capture_output=True)
        time.sleep(3)
        run = ["-T", str(args.seconds), "-p", str(listen)] + url + ["app"]
        procs.append(subprocess.Popen(["pgbench", "-n", "-S", "-c", "8", "-j", "2"] + run, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["pgbench", "-n", "-c", "2", "-j", "1"] + run, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        snaps, times = [], []
        start = time.time()
        while time.time() - start < args.seconds:
            snaps.append(scrape(http))
            times.append(time.time() - start)
            subprocess.run(["psql", "-X", "-q", f"postgres://app:app_pw@127.0.0.1:{listen}/app",
                            "-c", "SELECT 1/0"], capture_output=True)
            time.sleep(2)
    finally:
        for p in procs:
            p.terminate()
        subprocess.run(["bash", os.path.join(ROOT, "integration/cluster.sh"), "stop", cluster],
                       capture_output=True)

    t = times[1:]
    pairs = list(zip(snaps, snaps[1:]))
    dts = [b - a for a, b in zip(times, times[1:])]

    def rate(name, **m):
        return [(total(c, name, **m) - total(p, name, **m)) / dt for (p, c), dt in zip(pairs, dts)]

    def gauge(name, **m):
        return [total(c, name, **m) for _, c in pairs]

    panels = [
        ("Transactions per second", "ops/s", [("app", rate("pgsluice_transactions_total"))]),
        ("Queries per second", "ops/s", [("app", rate("pgsluice_queries_total"))]),
        ("Clients by state", "clients", [(s, gauge("pgsluice_client_connections", state=s))
                                         for s in label_values(snaps, "pgsluice_client_connections", "state")]),
        ("Server connections by state", "connections",
         [(s, gauge("pgsluice_server_connections", state=s))
          for s in label_values(snaps, "pgsluice_server_connections", "state")]
         + [("pool size", gauge("pgsluice_pool_size"))]),
        ("Query latency", "ms", [(f"p{int(q * 100)}", [1000 * quantile(q, p, c, "pgsluice_query_duration_seconds") for p, c in pairs])
                                 for q in (0.5, 0.95, 0.99)]),
        ("Transaction latency", "ms", [(f"p{int(q * 100)}", [1000 * quantile(q, p, c, "pgsluice_transaction_duration_seconds") for p, c in pairs])
                                       for q in (0.5, 0.95, 0.99)]),
        ("Pool wait", "ms", [("p99", [1000 * quantile(0.99, p, c, "pgsluice_pool_wait_duration_seconds") for p, c in pairs]),
                             ("longest waiting now", [1000 * v for v in gauge("pgsluice_client_wait_seconds_max")])]),
        ("Server errors by SQLSTATE class", "errors/s",
         [(f"class {k}", rate("pgsluice_server_errors_total", **{"class": k}))
          for k in label_values(snaps, "pgsluice_server_errors_total", "class")]),
        ("Replica lag (seconds)", "s", [(a, gauge("pgsluice_node_lag_seconds", addr=a))
                                        for a in label_values(snaps, "pgsluice_node_lag_seconds", "addr")]),
        ("Read set", "", [(f"in read set {a}", gauge("pgsluice_node_in_read_set", addr=a))
                          for a in label_values(snaps, "pgsluice_node_in_read_set", "addr")]),
        ("Reads and writes per node", "txn/s",
         [(f"reads {a}", rate("pgsluice_node_reads_total", addr=a)) for a in label_values(snaps, "pgsluice_node_reads_total", "addr")]
         + [(f"writes {a}", rate("pgsluice_node_writes_total", addr=a)) for a in label_values(snaps, "pgsluice_node_writes_total", "addr")]),
        ("Reads sent to the primary", "reads/s",
         [("read-your-writes fallback", rate("pgsluice_ryw_primary_reads_total")),
          ("no replica usable", rate("pgsluice_fallback_primary_reads_total")),
          ("retried on the primary", rate("pgsluice_node_retries_total"))]),
    ]
    fig, axes = plt.subplots(4, 3, figsize=(18, 16))
    for ax, (title, unit, series) in zip(axes.flat, panels):
        for label, ys in series:
            ax.plot(t, ys, label=label)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_xlabel("seconds")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("pgsluice dashboard panels (deploy/grafana/pgsluice.json), rendered with matplotlib from "
                 f"{len(snaps)} real /metrics scrapes — not a Grafana screenshot\n"
                 f"pgbench -S -c 8 and pgbench (TPC-B) -c 2 through pgsluice for {args.seconds} s, "
                 "a primary and a replica applying WAL 2 s late, one failing query (SELECT 1/0) every 2 s",
                 fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out} ({len(snaps)} scrapes)")


if __name__ == "__main__":
    sys.exit(main())
