#!/usr/bin/env python3
"""System calls per transaction of read-your-writes, counted with `strace -f -c`.

    python3 integration/ryw_syscalls.py [--binary PATH] [--baseline-binary PATH]
                                        [--variants V,V] [--workloads W,W]
                                        [--clients N] [--short N] [--long N] [--perf]
                                        [--rate TPS]

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ryw_instructions as R  # noqa: E402


def strace(out):
    return ["strace", "-f", "-c", "-o", out]


def perf(out):
    return ["perf", "stat", "-x,", "-o", out, "-e",
            "task-clock,context-switches,cpu-migrations,page-faults"]


def strace_counts(path):
    """Calls per system call from `strace -c`'s table."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                out[m.group(2)] = int(m.group(1))
    return out


def perf_counts(path):
    """`perf stat -x,`'s software counters; task-clock in µs."""
    out = {}
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 3 and re.match(r"^[\d.]+$", fields[0]):
                if fields[2] == "task-clock":
                    out["task-clock-us"] = float(fields[0]) * 1000.0
                else:
                    out[fields[2]] = float(fields[0])
    return out


class CountedRun(R.Run):
    """One pgsluice process under strace or perf (`wrap`), its counts read once it ends."""

    def counts(self, parse):
        # SIGTERM to pgsluice itself (the tool's child): the tool writes its report as the
        # process it runs exits.
        child = subprocess.run(["pgrep", "-P", str(self.proc.pid)], text=True,
                               capture_output=True).stdout.split()
        for pid in child:
            os.kill(int(pid), signal.SIGTERM)
        self.proc.wait(timeout=300)
        self.logf.close()
        return parse(self.out)


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
    ap.add_argument("--rate", type=int, default=0,
                    help="pgbench --rate: transactions per second over all clients (default: "
                         "as fast as they go)")
    args = ap.parse_args()
    R.RATE = args.rate
    wrap, parse = (perf, perf_counts) if args.perf else (strace, strace_counts)
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
        primary, replicas = R.start_cluster(cluster)
        delta = args.clients * (args.long - args.short)
        for w in workloads:
            for v in variants:
                binary = args.baseline_binary if v == "route-on-base" else args.binary
                text = R.config("{PORT}", "{HTTP}", primary, replicas, R.ROUTING[v])
                counts = []
                for txns in (args.short, args.long):
                    run = CountedRun(work, binary, text, f"{w}-{v}-{txns}", wrap, "counts")
                    R.pgbench(run, work, w, args.clients, txns)
                    m = R.metrics(run.http)
                    counts.append((run.counts(parse), m))
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
    rate = f", --rate {args.rate}" if args.rate else ""
    print(f"`{cmd}`: {args.clients} clients, pool size 10, -t {args.short} vs -t {args.long}"
          f"{rate}, primary + 2 replicas, synchronous_commit = on\n")
    what = "counters (task-clock in µs)" if args.perf else "system calls"
    print(f"| workload | variant | {what} per transaction, summed | the five largest | "
          "probes / txn |")
    print("|---|---|--:|---|--:|")
    for w, v, total, top, probes in rows:
        calls = ", ".join(f"{k} {x:.2f}" for k, x in top)
        print(f"| {w} | {v} | {total:.2f} | {calls} | {probes:.2f} |")


if __name__ == "__main__":
    main()
