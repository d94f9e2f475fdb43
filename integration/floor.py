#!/usr/bin/env python3
"""The floor of issue 14's CPU row: what the least possible pooler costs per transaction.

    python3 integration/floor.py [--binary PATH] [--baseline-binary PATH] [--pgbouncer-new PATH]
                                 [--modes simple,extended] [--rounds N] [--duration S]
                                 [--clients N]
                                 [--floors mio,nested,tokio,uring,uring-multishot,core,core-nostats]

`examples/floor_relay/` is a transaction-mode relay with nothing but the relay: no
authentication, no routing, no statistics, client messages not decoded; a `recv` and a
`send` on each side per transaction and one epoll set, as pgsluice and PgBouncer have. Its
forms (`--runtime`): `mio`, that readiness loop; `tokio`, the same relay as a task per
client on tokio (as pgsluice ran before its session loop); `nested`, the mio loop as one
tokio task (as pgsluice's session loop runs); `uring`, the same relay on io_uring (no
readiness step and no system call per receive or send: one `io_uring_enter` per turn of
its loop); `uring-multishot`, that with one multishot receive per socket; `core`, the mio
loop with pgsluice's session core between each client and its server (pgsluice's per-frame
work without its driver, runtime or pool); `core-nostats`, that with the cores' statistics
off. This script runs the forms `--floors` names (all seven by default) beside PgBouncer
1.18, the newer PgBouncer when given, and pgsluice on one throwaway cluster
(integration/bench.py's: `pgbench -n -S -c 50 -j 2`, pool size 20, the order rotated each
round; `--clients` changes -c, and at 1 the direct connection runs too) and reports each
one's CPU per transaction (utime and stime from /proc, over the run) and TPS, medians over
the rounds, with each floor's CPU against 0.8x each PgBouncer's: the row's goal (and at one
client the latency each adds over direct). Where a floor itself
is above the goal, no pooler on that I/O model meets the row, whatever its own work costs;
where it is under, what is left between them is all a pooler may spend of its own.

Raw pgbench output and the table go to integration/results/floor-<UTC timestamp>/.
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

FLOOR = os.path.join(B.ROOT, "target", "release", "examples", "floor_relay")


RUNTIMES = ("mio", "nested", "tokio", "uring", "uring-multishot", "core", "core-nostats")


def floor_target(runtime):
    return "floor" if runtime == "mio" else f"floor-{runtime}"


def start_floor(bench, binary, runtime="mio"):
    """Starts the floor relay as target "floor" (mio), "floor-nested", "floor-tokio" or
    "floor-uring"."""
    target = floor_target(runtime)
    port = B.pick_port()
    d = os.path.join(bench.work, target)
    os.makedirs(d, exist_ok=True)
    out = open(os.path.join(d, "stderr.log"), "w")
    proc = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}",
                             "--server", f"127.0.0.1:{bench.primary_port}",
                             "--user", B.USER, "--database", B.DATABASE,
                             "--servers", str(bench.args.pool_size), "--runtime", runtime],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    bench.procs[target] = (proc, proc.pid)
    bench.ports[target] = port
    B.wait_listening(port, proc, target)
    B.log(f"{target} (pid {proc.pid}, {binary}) on port {port}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=None, help="pgsluice (default target/release)")
    ap.add_argument("--baseline-binary", default=None, help="a second pgsluice, side by side")
    ap.add_argument("--floor-binary", default=FLOOR)
    ap.add_argument("--pgbouncer-new", default=None)
    ap.add_argument("--modes", default="simple,extended")
    ap.add_argument("--floors", default=",".join(RUNTIMES),
                    help="which forms of the floor relay run (mio must be among them)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50,
                    help="pgbench clients; at 1 the direct connection runs too, and the "
                         "latency each pooler adds to it is reported")
    given = sys.argv[1:]
    a = ap.parse_args()
    if not os.access(a.floor_binary, os.X_OK):
        sys.exit(f"floor: no {a.floor_binary}: cargo build --release --example floor_relay")
    poolers, args = B.pooler_args(a.binary, a.baseline_binary, a.pgbouncer_new, a.modes,
                                  a.clients)
    modes = a.modes.split(",")
    runtimes = a.floors.split(",")
    if "mio" not in runtimes or not set(runtimes) <= set(RUNTIMES):
        sys.exit(f"floor: --floors takes some of {','.join(RUNTIMES)}, mio among them")
    floors = [floor_target(r) for r in runtimes]
    targets = (["direct"] if a.clients == 1 else []) + poolers + floors
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(B.ROOT, "integration", "results", f"floor-{stamp}")
    os.makedirs(out_dir)
    bench = B.Bench(args)
    runs = {}  # (mode, target) -> [run dicts]
    loads = []
    try:
        bench.start_warm(poolers)
        for runtime in runtimes:
            start_floor(bench, a.floor_binary, runtime)
        for t in floors:
            bench.pgbench(t, "simple", 2, "warmup")
        for r in range(a.rounds):
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for mode in modes:
                for t in order:
                    tag = f"r{r + 1}-{mode}-{t}"
                    res = bench.pgbench(t, mode, a.duration, tag, results_dir=out_dir)
                    loads.append(os.getloadavg()[0])
                    runs.setdefault((mode, t), []).append(res)
                    B.log(f"{tag}: tps {res['tps']}, cpu {res.get('cpu_us')} us/txn "
                          f"(user {res.get('user_us')}, sys {res.get('sys_us')})")
    finally:
        bench.cleanup()
    names = dict(B.TARGET_NAMES)
    names.update({"floor": "floor relay, mio (examples/floor_relay/)",
                  "floor-nested": "floor relay, mio loop as one tokio task",
                  "floor-tokio": "floor relay, tokio task per client",
                  "floor-uring": "floor relay, io_uring",
                  "floor-uring-multishot": "floor relay, io_uring, multishot receives",
                  "floor-core": "floor relay, mio, with pgsluice's session core",
                  "floor-core-nostats": "floor relay, mio, with pgsluice's session core, "
                                        "statistics off"})
    for t, v in bench.pgbouncer_versions.items():
        names[t] = f"PgBouncer {B.short_version(v)}"
    cmd = "python3 " + " ".join([os.path.relpath(__file__, B.ROOT)] + given)

    def med(mode, t, key):
        vals = [x[key] for x in runs.get((mode, t), []) if x.get(key) is not None]
        return statistics.median(vals) if vals else None

    text = [f"Floor of the CPU row, {stamp}: `{cmd}`; pgbench -n -S -c {args.clients} -j 2 "
            f"-T {a.duration}, pool size {args.pool_size}, transaction mode, {a.rounds} rounds "
            f"(order rotated); 1-minute load average after each run: median "
            f"{statistics.median(loads):.2f}, max {max(loads):.2f}.\n",
            "| mode | pooler | TPS | CPU µs/txn | user | system | CPU × PgBouncer 1.18 | "
            "CPU × newer PgBouncer |",
            "|---|---|--:|--:|--:|--:|--:|--:|"]
    for mode in modes:
        base = {p: med(mode, p, "cpu_us") for p in poolers if p.startswith("pgbouncer")}
        for t in targets:
            cpu = med(mode, t, "cpu_us")
            if cpu is None:
                continue
            ratios = [f"×{cpu / base[p]:.2f}" if base.get(p) else "n/a"
                      for p in ("pgbouncer", "pgbouncer-new")]
            text.append(f"| {mode} | {names.get(t, t)} | {med(mode, t, 'tps'):,.0f} | "
                        f"{cpu:.2f} | {med(mode, t, 'user_us'):.2f} | "
                        f"{med(mode, t, 'sys_us'):.2f} | {ratios[0]} | {ratios[1]} |")
    text += ["", "The goal (issue 14): at most 0.8× PgBouncer's CPU per transaction.", "",
             "| mode | against | goal µs/txn | mio floor's system time alone | "
             + " | ".join(f"{r} floor µs/txn | within the goal" for r in runtimes) + " |",
             "|---|---|--:|--:|" + "--:|---|" * len(runtimes)]
    for mode in modes:
        floor_sys = med(mode, "floor", "sys_us")
        for p in poolers:
            if not p.startswith("pgbouncer"):
                continue
            base = med(mode, p, "cpu_us")
            if base is None or floor_sys is None:
                continue
            goal = 0.8 * base
            cells = []
            for t in floors:
                cpu = med(mode, t, "cpu_us")
                cells.append("n/a | n/a" if cpu is None else
                             f"{cpu:.2f} | {'yes' if cpu <= goal else '**no**'}")
            text.append(f"| {mode} | {names[p]} | {goal:.2f} | {floor_sys:.2f} | "
                        + " | ".join(cells) + " |")
    if a.clients == 1:
        text += ["", "Latency added over the direct connection (µs; each round's pooler "
                 "percentile minus the direct run's of the same round and mode; median over "
                 "the rounds):", "", "| mode | pooler | p50 added | p99 added |",
                 "|---|---|--:|--:|"]
        for mode in modes:
            direct = runs.get((mode, "direct"), [])
            for t in targets[1:]:
                added = {}
                for k in ("p50", "p99"):
                    d = [(x[k] - y[k]) * 1000 for x, y in zip(runs.get((mode, t), []), direct)
                         if x.get(k) is not None and y.get(k) is not None]
                    added[k] = f"{statistics.median(d):.1f}" if d else "n/a"
                text.append(f"| {mode} | {names.get(t, t)} | {added['p50']} | {added['p99']} |")
    text += ["", "Every run:", "", "| round | mode | pooler | TPS | CPU µs/txn | user | system |",
             "|---|---|---|--:|--:|--:|--:|"]
    for (mode, t), rs in runs.items():
        for i, x in enumerate(rs):
            if x.get("cpu_us") is None:
                continue
            text.append(f"| {i + 1} | {mode} | {names.get(t, t)} | {x['tps']:,.0f} | "
                        f"{x['cpu_us']:.2f} | {x['user_us']:.2f} | {x['sys_us']:.2f} |")
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
