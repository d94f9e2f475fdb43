#!/usr/bin/env python3
"""Memory per client while clients queue for servers: each pooler's RSS during
`pgbench -n -S -M MODE -c CLIENTS -j 2 -T 10` (transaction mode, pool size 20, so most
clients wait with a request for a server), sampled every second, against its RSS after a
2-second warm-up with 50 clients.

    python3 integration/queued_memory.py [--binary B] [--baseline-binary B2]
        [--pgbouncer-new PATH] [--clients 2000] [--mode extended] [--rounds 2]

The cluster, configurations and poolers are integration/bench.py's. Per client = (highest
RSS during the run - RSS after the warm-up) / CLIENTS: a later round shows what the
earlier ones left behind. Each round runs every pooler in turn, the order rotated. Raw samples and the table go to integration/results/queued-<UTC stamp>/.
"""
import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=None)
    ap.add_argument("--baseline-binary", default=None)
    ap.add_argument("--pgbouncer-new", default=None)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--mode", default="extended")
    ap.add_argument("--rounds", type=int, default=2)
    given = sys.argv[1:]
    a = ap.parse_args()
    targets, args = B.pooler_args(a.binary, a.baseline_binary, a.pgbouncer_new, a.mode)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(B.ROOT, "integration", "results", f"queued-{stamp}")
    os.makedirs(out_dir)
    B.raise_fd_limit(a.clients * 3 + 1000)
    bench = B.Bench(args)
    rows = {t: [] for t in targets}
    start = {}  # target -> RSS after its warm-up, KiB
    raw = []
    try:
        bench.start_warm(targets)
        for r in range(a.rounds):
            for t in targets[r % len(targets):] + targets[:r % len(targets)]:
                pid = bench.procs[t][1]
                start.setdefault(t, rss_kib(pid))
                before = start[t]
                cmd = ["pgbench", "-n", "-S", "-M", a.mode, "-c", str(a.clients), "-j", "2",
                       "-T", "10", "-h", "127.0.0.1", "-p", str(bench.ports[t]), "-U", B.USER,
                       B.DATABASE]
                p = subprocess.Popen(cmd, env=bench.pg_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
                samples = []
                while p.poll() is None:
                    time.sleep(1)
                    try:
                        samples.append(rss_kib(pid))
                    except OSError:
                        break
                out = p.communicate()[0]
                tps = re.search(r"tps = ([\d.]+)", out)
                per = (max(samples) - before) / a.clients if samples else None
                rows[t].append(per)
                line = (f"round {r + 1} {t}: RSS after warm-up {before} KiB, during {samples}, "
                        f"per client {per:.2f} KiB, tps {tps.group(1) if tps else 'n/a'}")
                raw.append(line)
                B.log(line)
    finally:
        bench.cleanup()
    names = B.TARGET_NAMES
    cmd = "python3 " + " ".join([os.path.relpath(__file__, B.ROOT)] + given)
    text = [f"Queued clients' memory, {stamp}: `{cmd}`; pgbench -n -S -M {a.mode} "
            f"-c {a.clients} -j 2 -T 10, pool size {args.pool_size}, transaction mode.\n",
            "| pooler | RSS per client during the run, KiB (each round) | median |",
            "|---|---|--:|"]
    for t in targets:
        vals = [v for v in rows[t] if v is not None]
        text.append(f"| {names.get(t, t)} | {', '.join(f'{v:.2f}' for v in vals)} | "
                    f"{statistics.median(vals):.2f} |" if vals else f"| {t} | n/a | n/a |")
    text += ["", "Every sample:", ""] + [f"    {x}" for x in raw]
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
