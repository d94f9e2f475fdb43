#!/usr/bin/env python3
"""System calls per transaction of read-your-writes, counted with `strace -f -c`.

    python3 integration/ryw_syscalls.py [--binary PATH] [--baseline-binary PATH]
                                        [--variants V,V] [--workloads W,W]
                                        [--clients N] [--short N] [--long N] [--perf]

The same cluster, configs, variants and workloads as integration/ryw_instructions.py
(primary + 2 streaming replicas, `synchronous_commit = on`, transaction mode, pool size
10), with pgsluice under `strace -f -c` instead of callgrind: (calls of the long run - calls
of the short run) / (clients * (LONG - SHORT)) per system call, for each variant and
workload; with --perf, `perf stat`'s software counters instead (task-clock, context
switches, migrations, page faults; no hardware counters in this VM). One repetition: a count does not depend on the machine's load the way time does,
though how often two answers share one read does. Needs strace (`apt-get install strace`).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ryw_instructions as R  # noqa: E402


class StraceRun(R.Run):
    """One pgsluice process under `strace -f -c`."""

    def __init__(self, work, binary, text, tag):
        self.port, self.http = R.free_port(), R.free_port()
        conf = os.path.join(work, f"{tag}.toml")
        with open(conf, "w") as f:
            f.write(text.replace("{PORT}", str(self.port)).replace("{HTTP}", str(self.http)))
        self.out = os.path.join(work, f"{tag}.strace")
        self.logf = open(os.path.join(work, f"{tag}.log"), "w")
        self.proc = subprocess.Popen(
            ["strace", "-f", "-c", "-o", self.out, binary, "--config", conf],
            stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, NO_COLOR="1"))
        R.wait_port(self.port, self.proc)
        time.sleep(1.0)

    def calls(self):
        """Calls per system call, once pgsluice has exited."""
        child = subprocess.run(["pgrep", "-P", str(self.proc.pid)], text=True,
                               capture_output=True).stdout.split()
        for pid in child:
            os.kill(int(pid), signal.SIGTERM)
        self.proc.wait(timeout=300)
        self.logf.close()
        out = {}
        with open(self.out) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
                if m and m.group(2) != "total":
                    out[m.group(2)] = int(m.group(1))
        return out


class PerfRun(StraceRun):
    """One pgsluice process under `perf stat` (software counters: this VM has no hardware
    ones): task-clock (reported in µs), context switches, CPU migrations, page faults."""

    def __init__(self, work, binary, text, tag):
        self.port, self.http = R.free_port(), R.free_port()
        conf = os.path.join(work, f"{tag}.toml")
        with open(conf, "w") as f:
            f.write(text.replace("{PORT}", str(self.port)).replace("{HTTP}", str(self.http)))
        self.out = os.path.join(work, f"{tag}.perf")
        self.logf = open(os.path.join(work, f"{tag}.log"), "w")
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x,", "-o", self.out, "-e",
             "task-clock,context-switches,cpu-migrations,page-faults", binary, "--config", conf],
            stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, NO_COLOR="1"))
        R.wait_port(self.port, self.proc)
        time.sleep(1.0)

    def calls(self):
        child = subprocess.run(["pgrep", "-P", str(self.proc.pid)], text=True,
                               capture_output=True).stdout.split()
        for pid in child:
            os.kill(int(pid), signal.SIGTERM)
        self.proc.wait(timeout=300)
        self.logf.close()
        out = {}
        with open(self.out) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 3 and re.match(r"^[\d.]+$", fields[0]):
                    scale = 1000.0 if fields[2] == "task-clock" else 1.0
                    name = "task-clock-us" if fields[2] == "task-clock" else fields[2]
                    out[name] = float(fields[0]) * scale
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(R.ROOT, "target", "release", "pgsluice"))
    ap.add_argument("--baseline-binary",
                    default=os.path.join(R.ROOT, "target", "baseline", "release", "pgsluice"))
    ap.add_argument("--variants", default="route-on,route-on-noprobe")
    ap.add_argument("--workloads", default="mixed,readonly")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--short", type=int, default=50)
    ap.add_argument("--long", type=int, default=550)
    ap.add_argument("--perf", action="store_true",
                    help="perf stat's software counters instead of strace's system calls")
    args = ap.parse_args()
    runner = PerfRun if args.perf else StraceRun
    if not shutil.which("perf" if args.perf else "strace"):
        raise SystemExit("strace or perf not found (apt-get install strace linux-perf)")
    variants, workloads = args.variants.split(","), args.workloads.split(",")
    work = tempfile.mkdtemp(prefix="pgsluice-rywsys.")
    os.chmod(work, 0o755)
    with open(os.path.join(work, "mixed.sql"), "w") as f:
        f.write(R.MIXED)
    cluster = os.path.join(work, "cluster")
    rows = []
    try:
        p = subprocess.run([R.CLUSTER_SH, "start", cluster, "--replicas", "2",
                            "--watch-pid", str(os.getpid())], text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"cluster.sh failed:\n{p.stderr}")
        primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
        replicas = [int(x) for x in
                    re.search(r'^REPLICA_PORTS="([\d ]+)"', p.stdout, re.M).group(1).split()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary),
                        "-U", "postgres", "app"], env=env, check=True, capture_output=True)
        subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres",
                        "-d", "app", "-c", "ALTER DATABASE app SET synchronous_commit = on"],
                       env=env, check=True, capture_output=True)
        time.sleep(2)
        delta = args.clients * (args.long - args.short)
        for w in workloads:
            for v in variants:
                binary = args.baseline_binary if v == "route-on-base" else args.binary
                text = R.config("{PORT}", "{HTTP}", primary, replicas, R.ROUTING[v])
                counts = []
                for txns in (args.short, args.long):
                    run = runner(work, binary, text, f"{w}-{v}-{txns}")
                    R.pgbench(run, work, w, args.clients, txns)
                    m = R.metrics(run.http)
                    counts.append((run.calls(), m))
                (a, ma), (b, mb) = counts
                per = {k: (b.get(k, 0) - a.get(k, 0)) / delta for k in set(a) | set(b)}
                probes = (mb["probes"] - ma["probes"]) / delta
                top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
                rows.append((w, v, sum(per.values()), top, probes))
                R.log(f"{w} {v}: {sum(per.values()):.2f} calls/txn, probes {probes:.2f}")
    finally:
        subprocess.run([R.CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python3 " + " ".join([os.path.relpath(sys.argv[0], R.ROOT)] + sys.argv[1:])
    print(f"`{cmd}`: {args.clients} clients, pool size 10, -t {args.short} vs -t {args.long}, "
          "primary + 2 replicas, synchronous_commit = on\n")
    what = "counters (task-clock in µs)" if args.perf else "system calls"
    print(f"| workload | variant | {what} per transaction, summed | the five largest | "
          "probes / txn |")
    print("|---|---|--:|---|--:|")
    for w, v, total, top, probes in rows:
        calls = ", ".join(f"{k} {x:.2f}" for k, x in top)
        print(f"| {w} | {v} | {total:.2f} | {calls} | {probes:.2f} |")


if __name__ == "__main__":
    main()
