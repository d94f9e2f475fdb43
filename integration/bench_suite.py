#!/usr/bin/env python3
"""pgsluice benchmark suite (issues 6, 14): pgsluice, PgBouncer and direct, one cluster, one run.

    python3 integration/bench_suite.py [--quick] [--clients-list 1,50,500,2000]
        [--modes simple,extended,prepared]
        [--targets direct,pgbouncer,pgbouncer-new,pgsluice] [--pgbouncer-new PATH]
        [--sections sweep,churn,idle,age] [--rounds N] [--duration S] [--duration-edge S]
        [--direct-max-clients N] [--churn-clients N] [--churn-duration S]
        [--idle-clients N] [--idle-concurrency N] [--age-clients N] [--age-wait S]
        [--pool-size N] [--no-build]
    python3 integration/bench_suite.py --report integration/results/<stamp>

Uses bench.py's machinery: a throwaway cluster (integration/cluster.sh, `pgbench -i -s
10`), PgBouncer 1.18 and pgsluice in transaction mode with the same pool size (20) and md5
client auth, pooler CPU time from /proc/PID/stat, p50/p99 from pgbench's -l log. With
--pgbouncer-new PATH, target `pgbouncer-new` is a second PgBouncer (a newer release built
from source) with the same configuration plus max_prepared_statements = 200 (PgBouncer 1.18
refuses that key, so it only gets it from 1.21 on); every ratio is given against each
PgBouncer. Sections:

  sweep   `pgbench -n -S -M MODE -c C -j 2` for every C of --clients-list (1, 50, 500,
          2000), every mode (simple, extended, prepared) and every target (direct,
          PgBouncer, pgsluice); each round runs every combination, the target order rotated
          per round. Each run has --duration (6) seconds of transactions, --duration-edge
          (5) at the smallest and largest client count; pgbench 15 counts connecting against
          -T, so -T adds what connecting took last time (see ConnectClock). Direct runs up
          to --direct-max-clients (2000): the primary's max_connections is raised to that +
          100 (ALTER SYSTEM, restart) before the poolers start. PgBouncer 1.18 has no
          prepared statements in transaction mode: it is run anyway and its errors
          reported, with no ratio. The 1-client runs also make the added-latency table
          (pooler p50/p99 minus direct's, same round and mode).
  churn   `pgbench -n -S -M simple -C -c 50 -j 2 -T 6`: a new connection per transaction,
          so TPS is connections per second; pooler CPU per connection.
  idle    for each pooler, a fresh process: its memory (VmRSS of /proc/PID/status, Pss of
          smaps_rollup) with no client, then with --idle-clients (10,000) connections that
          logged in and ran one query (idle_clients.py: md5 auth up to ReadyForQuery,
          `SELECT 1`, then silent) once VmRSS is stable, then after they left. KiB per
          client = (with - empty) / connected.
  age     for each pooler, a fresh process with --age-clients (10,000) such clients, all
          poolers' held at once: memory right after they went idle, then after --age-wait
          (600) seconds of silence, and the pooler's CPU time meanwhile (see suite_idle.py).

The poolers get max_client_conn = max(largest client count, idle clients) + 1000, and this
process raises its RLIMIT_NOFILE above that for pgbench and the poolers to inherit.

A full run (3 rounds, the defaults, without age and --pgbouncer-new) takes about 20 minutes on this 2-core machine (more
when it is busy), a quarter of it direct's 2,000 backends connecting (--direct-max-clients
500 saves ~5 minutes); --quick (1 round, 3 s runs, 2 s churn runs, 500 idle clients)
about 5; a second PgBouncer adds a third, the age section --age-wait and a minute. Writes
summary.md (a Markdown table per section, and a targets table checking
issue 14's goals against the data, against each PgBouncer), scale.png (TPS and p99 against clients, one column per
mode), runs.json and every pgbench run's raw output to integration/results/<UTC
timestamp>/, and prints the Markdown.
--report DIR renders summary.md and scale.png again from DIR/runs.json.
"""

import argparse
import datetime
import json
import os
import shlex
import signal
import sys
import threading
import time

import bench
import suite_idle
import suite_report
from bench import Bench, Failure, log

TARGETS = ["direct", "pgbouncer", "pgbouncer-new", "pgsluice"]
POOLERS = ["pgbouncer", "pgbouncer-new", "pgsluice"]
SECTIONS = ["sweep", "churn", "idle", "age"]
FULL = {"rounds": 3, "duration": 6, "duration_edge": 5, "churn_duration": 6,
        "idle_clients": 10000, "age_clients": 10000, "age_wait": 600, "warmup": 2}
QUICK = {"rounds": 1, "duration": 3, "duration_edge": 3, "churn_duration": 2,
         "idle_clients": 500, "age_clients": 500, "age_wait": 20, "warmup": 1}


# ------------------------------------------------------------------ sections


class ConnectClock:
    """pgbench 15 counts connecting its clients against -T, and direct needs 5-12 ms per
    backend here (~25 s for 2,000 clients), so a run's -T is the wanted duration plus an
    allowance: 1.25× the initial connection time pgbench last reported for the same target
    and client count; until there is one, 2.5× that of the next smaller count, scaled (a
    backend takes longer to start when there are many), or 2 s."""

    def __init__(self):
        self.per_client = {}  # (target, clients) -> seconds per client connected

    def allowance(self, target, clients):
        known = [c for t, c in self.per_client if t == target and c <= clients]
        if not known:
            return 2
        margin = 1.25 if max(known) == clients else 2.5
        return round(margin * self.per_client[(target, max(known))] * clients + 0.4)

    def learn(self, r):
        if r.get("conn_init_ms") is not None:
            self.per_client[(r["target"], r["clients"])] = r["conn_init_ms"] / 1e3 / r["clients"]


def rotated(targets, rnd):
    k = (rnd - 1) % max(1, len(targets))
    return targets[k:] + targets[:k]


class Suite:
    """One run: the cluster and poolers (bench.Bench), the options, the results folder, and
    the data the report is made of (data["sweep"], ["churn"], ["idle"])."""

    def __init__(self, args, results_dir, data):
        self.args, self.results_dir, self.data = args, results_dir, data
        self.b = Bench(args)
        self.b.max_client_conn = data["max_client_conn"]
        self.clock = ConnectClock()

    # -- setup

    def setup(self):
        b, args = self.b, self.args
        b.start_cluster()
        if "direct" in args.targets:
            most = max([c for c in args.clients_list if c <= args.direct_max_clients] + [0])
            if most + 100 > 300:  # cluster.sh's max_connections
                self.allow_direct_clients(most + 100)
        for t in POOLERS:
            if t not in args.targets or t in b.dead:
                continue
            try:
                if t in bench.PGBOUNCERS:
                    b.start_pgbouncer(t)
                else:
                    b.start_pgsluice(t)
                b.smoke(t)
            except Failure as e:
                b.dead[t] = "did not work: " + bench.oneline(str(e))
                log(b.dead[t])
        if args.warmup > 0 and "sweep" in args.sections:
            for t in self.live():
                log(f"warm-up {args.warmup}s: {t}")
                b.pgbench(t, "simple", args.warmup, "warmup", clients=50)

    def allow_direct_clients(self, n):
        """Raises the primary's max_connections to n (ALTER SYSTEM, restart); the port stays."""
        b = self.b
        log(f"max_connections = {n} on the primary (restart)")
        p = bench.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(b.primary_port),
                       "-U", bench.USER, "-d", "postgres", "-c",
                       f"ALTER SYSTEM SET max_connections = {n}"], check=False, env=b.pg_env())
        if p.returncode != 0:
            raise Failure(f"ALTER SYSTEM failed: {p.stderr}")
        for step in (["stop-node", b.cluster_dir, "primary", "fast"],
                     ["start-node", b.cluster_dir, "primary"]):
            p = bench.run([bench.CLUSTER_SH] + step, check=False)
            if p.returncode != 0:
                raise Failure(f"cluster.sh {step[0]} failed: {p.stderr}")

    def live(self):
        return [t for t in self.args.targets if t not in self.b.dead]

    def usable(self, target):
        """False (and the target marked dead) when its pooler process has exited."""
        b = self.b
        if target in b.dead:
            return False
        if target != "direct" and not b.alive(target):
            b.dead[target] = (f"exited with status {b.procs[target][0].returncode} during "
                              f"the benchmark; log tail: "
                              + bench.oneline(bench.tail(b.pooler_log(target), 10)))
            log(b.dead[target])
            return False
        return True

    # -- pgbench sections

    def run(self, section, rnd, target, mode, duration, clients, connect=False):
        tag = f"{section}-r{rnd}-c{clients}-{mode}-{target}"
        t = duration + (0 if connect else self.clock.allowance(target, clients))
        log(f"{section} round {rnd}: -c {clients} {mode}{' -C' if connect else ''} via "
            f"{target} (-T {t})")
        r = self.b.pgbench(target, mode, t, tag, self.results_dir, clients=clients,
                           connect=connect)
        self.clock.learn(r)
        r.update(round=rnd, section=section, file=os.path.basename(r["file"]), T=t,
                 load1=os.getloadavg()[0])
        if r.get("conn_init_ms") is not None:
            r["window_s"] = round(t - r["conn_init_ms"] / 1e3, 1)
        log(f"  tps={bench.fmt(r['tps'], 0)} p99={bench.fmt(r['p99'], 3)}ms "
            f"cpu µs/txn={bench.fmt(r.get('cpu_us'), 1)} failed={r['failed']} "
            f"aborted={r['aborted']} exit={r['status']}")
        self.data[section].append(r)
        time.sleep(1)  # let closed connections and exiting backends go

    def sweep(self):
        args = self.args
        for rnd in range(1, args.rounds + 1):
            order = rotated(self.live(), rnd)
            for clients in args.clients_list:
                for mode in args.modes:
                    for t in order:
                        if t == "direct" and clients > args.direct_max_clients:
                            continue
                        if self.usable(t):
                            self.run("sweep", rnd, t, mode, args.duration_at[clients], clients)

    def churn(self):
        args = self.args
        for rnd in range(1, args.rounds + 1):
            for t in rotated(self.live(), rnd):
                if self.usable(t):
                    self.run("churn", rnd, t, "simple", args.churn_duration,
                             args.churn_clients, connect=True)

    # -- memory

    def poolers(self):
        return [t for t in POOLERS if t in self.args.targets]

    def fresh_pooler(self, target):
        """Stops target's process and starts a new one, so no earlier load shows in its
        memory; returns its pid."""
        if target in bench.PGBOUNCERS:
            self.b.stop_pgbouncer(target)
            self.b.start_pgbouncer(target)
        else:
            self.b.stop_pgsluice(target)
            self.b.start_pgsluice(target)
        return self.b.procs[target][1]

    def idle(self):
        suite_idle.idle(self)

    def age(self):
        suite_idle.age(self)

    # -- all of it

    def measure(self):
        try:
            self.setup()
            for section in self.args.sections:
                getattr(self, section)()
        except KeyboardInterrupt:
            self.b.notes.append("**Interrupted**: partial results.")
            log("interrupted: writing the partial results")
        except Failure as e:
            self.b.notes.append(f"**Stopped by an error**, partial results: "
                                f"{bench.oneline(str(e))}")
            log(f"error: {e}")
        finally:
            for t in POOLERS:
                if t in self.b.procs or (t in bench.PGBOUNCERS and t in self.b.ports):
                    with open(os.path.join(self.results_dir, f"{t}.log.tail"), "w") as f:
                        f.write(bench.tail(self.b.pooler_log(t), 40))
            self.b.cleanup()
            self.data["dead"], self.data["notes"] = self.b.dead, self.b.notes


# ------------------------------------------------------------------ main


def int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]


def name_list(text, allowed, what, ap):
    names = [x.strip() for x in text.split(",") if x.strip()]
    for n in names:
        if n not in allowed:
            ap.error(f"unknown {what} {n!r} ({', '.join(allowed)})")
    return [n for n in allowed if n in names]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--clients-list", default="1,50,500,2000", help="sweep client counts")
    ap.add_argument("--modes", default="simple,extended,prepared")
    ap.add_argument("--targets", default=None,
                    help="direct,pgbouncer,pgbouncer-new,pgsluice (default: all but "
                         "pgbouncer-new, and it too with --pgbouncer-new)")
    ap.add_argument("--pgbouncer-new", default=None, metavar="PATH",
                    help="a newer PgBouncer binary, run as a fourth target, pgbouncer-new")
    ap.add_argument("--sections", default="sweep,churn,idle,age")
    # Options in FULL and QUICK default to None here: --quick changes only those not given.
    ap.add_argument("--rounds", type=int, help="rounds (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per sweep run (6)")
    ap.add_argument("--duration-edge", type=int,
                    help="seconds per sweep run at the smallest and largest client count (5)")
    ap.add_argument("--direct-max-clients", type=int, default=2000,
                    help="direct runs only up to this many clients (2000)")
    ap.add_argument("--churn-clients", type=int, default=50, help="pgbench -C -c (50)")
    ap.add_argument("--churn-duration", type=int, help="seconds per churn run (6)")
    ap.add_argument("--idle-clients", type=int, help="idle connections (10000)")
    ap.add_argument("--idle-concurrency", type=int, default=100,
                    help="idle connections opening at a time (100)")
    ap.add_argument("--age-clients", type=int, help="idle connections per pooler, age (10000)")
    ap.add_argument("--age-wait", type=int,
                    help="seconds the age section's clients stay idle between readings (600)")
    ap.add_argument("--pool-size", type=int, default=20, help="pool size of both poolers (20)")
    ap.add_argument("--jobs", type=int, default=2, help="pgbench -j (default 2)")
    ap.add_argument("--workers", type=int, default=1, help="pgsluice general.workers (1)")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (default 10)")
    ap.add_argument("--warmup", type=int,
                    help="seconds of unrecorded pgbench per target before the sweep (2)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                                    for k, v in QUICK.items()))
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--binary", default=None, help="pgsluice binary (default target/release)")
    ap.add_argument("--report", metavar="DIR", default=None,
                    help="render DIR/summary.md and DIR/scale.png again from DIR/runs.json")
    args = ap.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.clients_list = sorted(set(int_list(args.clients_list)))
    if not args.clients_list or min(args.clients_list) < 1:
        ap.error("--clients-list wants positive numbers")
    edges = {args.clients_list[0], args.clients_list[-1]} if len(args.clients_list) > 1 else set()
    args.duration_at = {c: args.duration_edge if c in edges else args.duration
                        for c in args.clients_list}
    args.modes = name_list(args.modes, bench.ALL_MODES, "mode", ap)
    if args.targets is None:
        args.targets = "direct,pgbouncer,pgsluice" + (",pgbouncer-new" if args.pgbouncer_new
                                                      else "")
    args.targets = name_list(args.targets, TARGETS, "target", ap)
    if "pgbouncer-new" in args.targets and not args.pgbouncer_new:
        ap.error("target pgbouncer-new needs --pgbouncer-new")
    args.sections = name_list(args.sections, SECTIONS, "section", ap)
    args.clients = 50  # pgbench's default -c in bench.Bench; the suite always passes -c
    args.replicas, args.baseline_binary, args.tls = 0, None, False
    if args.binary is None:
        tdir = os.environ.get("CARGO_TARGET_DIR", "target")
        args.binary = os.path.join(bench.ROOT, tdir, "release", "pgsluice")
    return args


def header(args, stamp, versions):
    command = "python3 " + shlex.join([os.path.relpath(sys.argv[0], bench.ROOT)]
                                      + sys.argv[1:])
    pgbouncers = "".join(f"{v}, " for t, v in versions.items() if t in args.targets)
    return (f"`{command}` — {stamp.strftime('%Y-%m-%d %H:%M UTC')}, {bench.machine()}, "
            f"{bench.tool_version(['pgbench', '--version'])}, {pgbouncers}pgsluice commit "
            f"{bench.git_commit()}; {args.rounds} round(s), pool size {args.pool_size} "
            f"(transaction mode, every pooler), pgbench -j {args.jobs}, scale {args.scale}, "
            f"pgsluice workers {args.workers}")


def sample_load(samples, t0, stop, every=15.0):
    """Appends [seconds since start, 1-, 5-, 15-minute load average] every `every` s: the
    machine is shared, and the report says how busy it was."""
    while True:
        samples.append([round(time.monotonic() - t0)] + [round(v, 2) for v in os.getloadavg()])
        if stop.wait(every):
            return


def write_report(results_dir, data):
    report, plot_note = suite_report.render(data, results_dir)
    with open(os.path.join(results_dir, "summary.md"), "w") as f:
        f.write(report)
    print(report)
    if plot_note:
        log(plot_note)
    log(f"results in {os.path.relpath(results_dir, bench.ROOT)}")


def main():
    args = parse_args()
    if args.report:
        with open(os.path.join(args.report, "runs.json")) as f:
            write_report(args.report, json.load(f))
        return 0
    build_note = None
    if "pgsluice" in args.targets and not args.no_build:
        build_note = bench.cargo_build()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    results_dir = os.path.join(bench.ROOT, "integration", "results",
                               stamp.strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(results_dir, exist_ok=True)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    t0 = time.monotonic()
    max_client_conn = max(args.clients_list + [args.idle_clients, args.age_clients]) + 1000
    bench.raise_fd_limit(max_client_conn + 1000)
    versions = {t: bench.tool_version([p, "--version"]) for t, p in
                (("pgbouncer", bench.PGBOUNCER), ("pgbouncer-new", args.pgbouncer_new)) if p}
    data = {"header": header(args, stamp, versions), "clients_list": args.clients_list,
            "modes": args.modes, "targets": args.targets, "sections": args.sections,
            "rounds": args.rounds, "pool_size": args.pool_size,
            "duration_at": {str(c): d for c, d in args.duration_at.items()},
            "direct_max_clients": args.direct_max_clients,
            "churn_clients": args.churn_clients, "churn_duration": args.churn_duration,
            "idle_clients": args.idle_clients, "max_client_conn": max_client_conn,
            "age_clients": args.age_clients, "age_wait": args.age_wait,
            "pgbouncer_version": versions.get("pgbouncer"), "pgbouncer_versions": versions,
            "load": [], "sweep": [], "churn": [], "idle": [], "age": []}
    suite = Suite(args, results_dir, data)
    stop_sampling = threading.Event()
    threading.Thread(target=sample_load, args=(data["load"], t0, stop_sampling),
                     daemon=True).start()
    if build_note:
        suite.b.dead["pgsluice"] = build_note
    try:
        suite.measure()
    finally:
        stop_sampling.set()
        data["minutes"] = round((time.monotonic() - t0) / 60, 1)
        with open(os.path.join(results_dir, "runs.json"), "w") as f:
            json.dump(data, f, indent=1)
    write_report(results_dir, data)
    return 0 if any(data[s] for s in SECTIONS) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
