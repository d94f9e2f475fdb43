#!/usr/bin/env python3
"""pgsluice routing benchmark: read/write split and read-your-writes, on a primary and
two streaming replicas.

    python3 integration/bench_routing.py [--duration S] [--rounds N] [--clients N]
                                         [--pool-size N] [--no-build]
                                         [--workloads W,W] [--synchronous-commit on|off]
                                         [--baseline-ref REF] [--rate TPS]
                                         [--targets T,T] [--perf] [--binary PATH]
                                         [--base-binary PATH] [--concurrent]

Starts a throwaway cluster (integration/cluster.sh, two replicas), `pgbench -i -s 10` on
the primary, then these targets, all with the same pool size and md5 client auth:

  direct            the primary itself
  pgbouncer         PgBouncer 1.18 in transaction mode, to the primary (no routing)
  route-off         pgsluice, transaction mode, replicas configured, read_write_split = false
  route-on          pgsluice, read_write_split = true, read_your_writes = "lsn" (defaults)
  route-on-ryw-off  pgsluice, read_write_split = true, read_your_writes = "off"
  route-on-base     pgsluice built from --baseline-ref (default: the commit before the
                    second routing round, whose read-your-writes waited for the monitor's
                    100 ms poll), route-on config: "today's" pooler, in the same run
  route-on-noprobe  route-on with ryw_probe = false (this build, no probe)
  route-on-nowait   route-on with ryw_max_wait = 0 (a probe asks once, does not wait)
  route-on-fastwatch  ryw_probe = false, lag_check_interval = 0.005: the monitor asks each
                    node for its position every 5 ms instead of probing at checkout
  route-on-primary  the route-on pgsluice, with every client connecting with
                    options=-c pgsluice.route=primary: each statement is still classified
                    and routed, but all go to the primary, as with route-off. Against
                    route-off this isolates what the router itself costs per transaction;
                    route-on against route-off also includes spreading the work over three
                    PostgreSQL instances that share this machine's two cores.

route-on-base and route-on-noprobe also run the select-* workloads (a session that
never writes), when asked for by --targets (the default list leaves them out there).

Workloads (each run `pgbench -n -c CLIENTS -j 2 -T DURATION`):

  select-simple     pgbench -S -M simple (literal values: the classifier's cache key
                    replaces them)
  select-extended   pgbench -S -M extended
  mixed             a custom script: one UPDATE of a random account, then three SELECTs
                    of the same row, each its own transaction (autocommit)

Per run: TPS, latency p50/p99, the pooler's CPU time per transaction (utime+stime from
/proc), its sleeps per transaction (voluntary context switches of all its threads: each
is a wait in `epoll_wait` or on a lock that a wake-up ended), and the share of reads served by replicas over the reads the workload made (1 per
transaction for select-*, 3 for mixed): for pgsluice, the reads it routed to replicas
(pgsluice_node_reads_total in /metrics); for direct and PgBouncer, the replicas'
xact_commit delta (pg_stat_database, database app).

--synchronous-commit on sets it for the benchmark database on the primary: the test
clusters run with it off, so the primary ships WAL only when its WAL writer flushes
(every 200 ms) and no replica is ever a few milliseconds behind a fresh commit; with it on
(fsync stays off) a replica replays a commit within about a millisecond, the case
read-your-writes probes are for.

--perf also counts the pooler's CPU with `perf stat -e task-clock -p PID` over each run
(to the ns, every thread; /proc's utime+stime move in 10 ms ticks, which at a low --rate is
a few percent of a run), with its own columns and round-by-round ratios, and its system
calls per transaction (the raw_syscalls:sys_enter tracepoint, every thread).

--rate TPS runs pgbench at that fixed rate (-R) instead of flat out: every target then
does the same work per second, so CPU per transaction compares the code paths and not
how busy each target happened to be (a pooler that handles fewer transactions a second
pays its per-wakeup costs over fewer of them).

--targets T,T runs only those targets (route-off is always run: the ratios need it).

--concurrent runs a workload's targets at the same time, each with its own pgbench at
--rate divided by the number of targets, instead of one after the other. Run one after
the other, two runs of the same binary differ by up to 25 % on this shared machine when
something else runs for a few seconds; run together, each target meets the same
disturbance, and the ratios of one round measure the code (each pooler's CPU is still
counted over its own transactions). route-on-primary cannot be run with it (it shares
route-on's process).

Rounds interleave targets (order rotated); medians are reported. Results go to
integration/results/routing-<UTC timestamp>/.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

MIXED = """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
"""

WORKLOADS = {
    "select-simple": (["-S", "-M", "simple"], 1),
    "select-extended": (["-S", "-M", "extended"], 1),
    "mixed": (["-M", "simple", "-f", "MIXED"], 3),
}
TARGETS = {
    "select-simple": ["direct", "pgbouncer", "route-off", "route-on", "route-on-primary",
                      "route-on-base", "route-on-noprobe"],
    "select-extended": ["direct", "pgbouncer", "route-off", "route-on", "route-on-primary",
                        "route-on-base", "route-on-noprobe"],
    "mixed": ["direct", "pgbouncer", "route-off", "route-on", "route-on-ryw-off",
              "route-on-base", "route-on-noprobe", "route-on-nowait", "route-on-fastwatch"],
}
ROUTING = {
    "route-off": "read_write_split = false",
    "route-on": "read_write_split = true\nread_your_writes = \"lsn\"",
    "route-on-ryw-off": "read_write_split = true\nread_your_writes = \"off\"",
    "route-on-base": "read_write_split = true\nread_your_writes = \"lsn\"",
    "route-on-noprobe": "read_write_split = true\nread_your_writes = \"lsn\"\nryw_probe = false",
    "route-on-nowait": "read_write_split = true\nread_your_writes = \"lsn\"\nryw_max_wait = 0",
    "route-on-fastwatch": "read_write_split = true\nread_your_writes = \"lsn\"\n"
                          "ryw_probe = false\nlag_check_interval = 0.005",
}
# The commit before the second routing round (2bcefb2): today's pooler.
BASELINE_REF = "2bcefb2^"


def log(msg):
    print(f"bench_routing: {msg}", file=sys.stderr, flush=True)


class RoutingBench(B.Bench):
    http_ports = {}

    def replica_reads(self, target):
        """Reads the pooler routed to replicas (pgsluice_node_reads_total, nodes other
        than the primary, node 0): unlike the replicas' commit counts, without the
        monitor's checks and read-your-writes probes."""
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[target]}/metrics",
                                    timeout=10) as r:
            text = r.read().decode()
        total = 0
        for line in text.splitlines():
            m = re.match(r'pgsluice_node_reads_total\{database="%s",node="(\d+)"[^}]*\} (\S+)'
                         % B.DATABASE, line)
            if m and m.group(1) != "0":
                total += float(m.group(2))
        return total

    def start_cluster(self):
        super().start_cluster()
        with open(os.path.join(self.cluster_dir, "env")) as f:
            env = f.read()
        m = re.search(r'REPLICA_PORTS="([\d ]+)"', env)
        self.replica_ports = [int(p) for p in m.group(1).split()] if m else []
        if len(self.replica_ports) != 2:
            raise B.Failure(f"expected two replicas, cluster env: {env}")
        self.wait_replicas()
        if self.args.synchronous_commit:
            self.psql(self.primary_port, f"ALTER DATABASE {B.DATABASE} SET synchronous_commit "
                                         f"= {self.args.synchronous_commit}")

    def psql(self, port, sql):
        p = B.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", B.USER,
                   "-d", B.DATABASE, "-c", sql], check=False, env=self.pg_env())
        if p.returncode != 0:
            raise B.Failure(f"psql -p {port} {sql!r}: {p.stderr}")
        return p.stdout.strip()

    def wait_replicas(self):
        lsn = self.psql(self.primary_port, "SELECT pg_current_wal_lsn()")
        for port in self.replica_ports:
            for _ in range(300):
                if self.psql(port, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t":
                    break
                time.sleep(0.1)

    def commits(self, port):
        return int(self.psql(port, "SELECT xact_commit FROM pg_stat_database "
                                   "WHERE datname = current_database()"))

    def start_routed(self, target):
        d = os.path.join(self.work, target)
        os.mkdir(d)
        port = B.pick_port()
        http = B.pick_port()
        self.http_ports[target] = http
        conf = os.path.join(d, "pgsluice.toml")
        replicas = ", ".join(f'"127.0.0.1:{p}"' for p in self.replica_ports)
        with open(conf, "w") as f:
            f.write(f"""[general]
listen_addr = "127.0.0.1:{port}"
pool_mode = "transaction"
max_client_conn = 10000
default_pool_size = {self.args.pool_size}

[auth]
type = "md5"

[[users]]
name = "{B.USER}"
password = "{B.PASSWORD}"

[databases.{B.DATABASE}]
primary = "127.0.0.1:{self.primary_port}"
replicas = [{replicas}]

[admin]
http_listen_addr = "127.0.0.1:{http}"

[routing]
{ROUTING[target]}
""")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGSLUICE_")}
        env["NO_COLOR"] = "1"
        logf = open(os.path.join(d, "pgsluice.log"), "w")
        binary = self.args.base_binary if target == "route-on-base" else self.args.binary
        proc = subprocess.Popen([binary, "--config", conf], cwd=d, env=env,
                                stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        self.procs[target] = (proc, proc.pid)
        self.ports[target] = port
        B.wait_listening(port, proc, target)
        log(f"{target} (pid {proc.pid}) on port {port}")

    def run_workload(self, target, workload, duration, results_dir, tag, rate=None):
        env = self.pg_env()
        if target == "route-on-primary":
            env["PGOPTIONS"] = "-c pgsluice.route=primary"
            target = "route-on"
        flags, reads_per_txn = WORKLOADS[workload]
        flags = [os.path.join(self.work, "mixed.sql") if f == "MIXED" else f for f in flags]
        rate = rate or self.args.rate
        rate = ["-R", str(rate)] if rate else []
        txlog = os.path.join(self.work, f"txlog-{tag}")
        cmd = ["pgbench", "-n", *flags, *rate, "-c", str(self.args.clients), "-j", "2",
               "-T", str(duration), "-h", "127.0.0.1", "-p", str(self.ports[target]),
               "-U", B.USER, "-l", f"--log-prefix={txlog}/tx", B.DATABASE]
        os.makedirs(txlog, exist_ok=True)
        pid = self.procs[target][1] if target != "direct" else None
        time.sleep(1.5)
        before = [self.commits(p) for p in self.replica_ports]
        routed0 = self.replica_reads(target) if target in self.http_ports else None
        cpu0 = B.cpu_split(pid) if pid else None
        sleeps0 = sleeps(pid) if pid else None
        perf_out = os.path.join(results_dir, f"{tag}.perf")
        perf = (subprocess.Popen(["perf", "stat", "-x", ",", "-e",
                                  "task-clock,raw_syscalls:sys_enter", "-p", str(pid),
                                  "-o", perf_out])
                if pid and self.args.perf else None)
        p = B.run(cmd, check=False, env=env, timeout=duration + 120)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        cpu1 = B.cpu_split(pid) if pid else None
        sleeps1 = sleeps(pid) if pid else None
        # Backends publish their counters at most once a second (PostgreSQL 15).
        time.sleep(1.5)
        after = [self.commits(p) for p in self.replica_ports]
        routed1 = self.replica_reads(target) if target in self.http_ports else None
        syscalls = perf_count(perf_out, "raw_syscalls:sys_enter") if perf else None
        m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", p.stdout)
        t = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
        f = re.search(r"number of failed transactions: (\d+)", p.stdout)
        txns = int(t.group(1)) if t else 0
        lats = []
        for name in os.listdir(txlog):
            with open(os.path.join(txlog, name)) as fh:
                for line in fh:
                    parts = line.split(None, 3)
                    if len(parts) >= 3 and parts[2].isdigit():
                        lats.append(int(parts[2]))
        shutil.rmtree(txlog, ignore_errors=True)
        lats.sort()
        replica_reads = sum(a - b for a, b in zip(after, before))
        if routed0 is not None:
            replica_reads = routed1 - routed0
        r = {
            "tps": float(m.group(1)) if m else None,
            "failed": int(f.group(1)) if f else (None if p.returncode == 0 else "exit"),
            "p50": B.percentile(lats, 50) / 1000 if lats else None,
            "p99": B.percentile(lats, 99) / 1000 if lats else None,
            "cpu_us": (sum(cpu1) - sum(cpu0)) * 1e6 / txns if pid and txns else None,
            "user_us": (cpu1[0] - cpu0[0]) * 1e6 / txns if pid and txns else None,
            "sys_us": (cpu1[1] - cpu0[1]) * 1e6 / txns if pid and txns else None,
            "sleeps": (sleeps1 - sleeps0) / txns if pid and txns else None,
            "task_us": task_clock_ms(perf_out) * 1e3 / txns if perf and txns else None,
            "syscalls": (syscalls / txns if syscalls and txns else None),
            "replica_share": min(1.0, replica_reads / (txns * reads_per_txn)) if txns else None,
        }
        with open(os.path.join(results_dir, f"{tag}.txt"), "w") as fh:
            fh.write("$ " + " ".join(cmd) + "\n" + p.stdout + p.stderr[-4000:])
            fh.write(f"\n# replica commits {replica_reads}, result {r}\n")
        return r


def run_together(bench, targets, workload, args, rnd, results_dir, results):
    """One round of `workload` on every target at once (--concurrent)."""
    rate = max(1, args.rate // len(targets)) if args.rate else None
    out = {}

    def one(target):
        tag = f"r{rnd}-{workload}-{target}"
        out[target] = bench.run_workload(target, workload, args.duration, results_dir, tag,
                                         rate=rate)

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for target in targets:
        if target not in out:
            sys.exit(f"bench_routing: the run on {target} failed")
        results.setdefault((workload, target), []).append(out[target])


def task_clock_ms(path):
    """The task-clock (ms of CPU, every thread, counted by the scheduler to the ns) in a
    `perf stat -x ,` output file; None when it has none."""
    return perf_count(path, "task-clock")


def perf_count(path, event):
    """The count of `event` in a `perf stat -x ,` output file; None when it has none."""
    with open(path) as fh:
        for line in fh:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[2] == event:
                try:
                    return float(parts[0])
                except ValueError:  # "<not counted>"
                    return None
    return None


def sleeps(pid):
    """Voluntary context switches of every thread of `pid` (each is a sleep, mostly in
    `epoll_wait`, that a wake-up ended), from /proc/PID/task/*/status."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def build_baseline(ref, no_build):
    """pgsluice as of `ref`, built from `git archive` in target/baseline (its own target
    directory, seeded with a copy of target/release so that only pgsluice itself is
    compiled: sharing target/ would let the two trees overwrite each other's pgsluice).
    Returns the binary's path."""
    base = os.path.join(B.ROOT, "target", "baseline")
    out = os.path.join(base, "release", "pgsluice")
    if no_build and os.path.exists(out):
        return out
    src = os.path.join(base, "src")
    B.run(["rm", "-rf", src])
    os.makedirs(src)
    B.run(["bash", "-c", f"git archive {ref} | tar -x -C {src}"], cwd=B.ROOT)
    if not os.path.exists(os.path.join(base, "release")):
        B.run(["cp", "-a", os.path.join(B.ROOT, "target", "release"), base])
    # With this tree's release profile (whole-program LTO, one codegen unit) and its
    # layout of the functions a transaction runs (build.rs, link/hot-symbols.txt), not
    # the baseline's own: the comparison is of the code, not of the build settings.
    env = dict(os.environ, CARGO_TARGET_DIR=base, CARGO_PROFILE_RELEASE_LTO="fat",
               CARGO_PROFILE_RELEASE_CODEGEN_UNITS="1")
    order = os.path.join(B.ROOT, "link", "hot-symbols.txt")
    link = (["--", "-C", f"link-arg=-Wl,--symbol-ordering-file={order}",
             "-C", "link-arg=-Wl,--no-warn-symbol-ordering"]
            if os.path.exists(order) and not os.environ.get("PGSLUICE_NO_SYMBOL_ORDER") else [])
    B.run(["cargo", "rustc", "--release", "--quiet", "--locked", "--bin", "pgsluice", *link],
          cwd=src, env=env)
    rev = B.run(["git", "rev-parse", "--short", ref], cwd=B.ROOT).stdout.strip()
    log(f"baseline {ref} ({rev}) built: {out}")
    return out


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--pool-size", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--synchronous-commit", choices=["on", "off"])
    ap.add_argument("--baseline-ref", default=BASELINE_REF)
    ap.add_argument("--rate", type=int)
    ap.add_argument("--targets", help="comma-separated subset of the targets")
    ap.add_argument("--binary", help="the pgsluice to run as route-off, route-on and its "
                    "variants (default: target/release/pgsluice, built unless --no-build)")
    ap.add_argument("--base-binary", help="the pgsluice to run as route-on-base instead of "
                    "building --baseline-ref (e.g. that commit built with other profile "
                    "settings)")
    ap.add_argument("--concurrent", action="store_true",
                    help="run a workload's targets at the same time, each with its own "
                         "pgbench at --rate divided by the number of targets: whatever "
                         "else the shared machine runs then weighs on all of them alike")
    ap.add_argument("--perf", action="store_true",
                    help="also count the pooler's CPU with perf stat's task-clock (to the "
                         "ns; /proc's utime+stime move in 10 ms ticks, a few %% of a run "
                         "at a low --rate)")
    args = ap.parse_args()
    args.replicas, args.scale, args.jobs, args.workers = 2, 10, 2, 1
    args.tls, args.baseline_binary = False, None
    args.binary = args.binary or os.path.join(B.ROOT, "target", "release", "pgsluice")
    for w in list(TARGETS):
        if w not in args.workloads.split(","):
            del TARGETS[w]
    if args.targets:
        keep = set(args.targets.split(",")) | {"route-off"}
        for w in TARGETS:
            TARGETS[w] = [t for t in TARGETS[w] if t in keep]
    else:
        for w in ("select-simple", "select-extended"):
            if w in TARGETS:
                TARGETS[w] = [t for t in TARGETS[w]
                              if t not in ("route-on-base", "route-on-noprobe")]
    if args.concurrent and any("route-on-primary" in ts and "route-on" in ts
                               for ts in TARGETS.values()):
        sys.exit("bench_routing: --concurrent cannot run route-on-primary (route-on's "
                 "process) beside route-on")
    args.base_binary = args.base_binary or build_baseline(args.baseline_ref, args.no_build)
    if not args.no_build:
        B.run(["cargo", "build", "--release", "--quiet"], cwd=B.ROOT)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results_dir = os.path.join(B.ROOT, "integration", "results", f"routing-{stamp}")
    os.makedirs(results_dir)
    bench = RoutingBench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        bench.start_cluster()
        with open(os.path.join(bench.work, "mixed.sql"), "w") as f:
            f.write(MIXED)
        wanted = {t for ts in TARGETS.values() for t in ts}
        if "route-on-primary" in wanted:
            wanted.add("route-on")
        for t in ROUTING:
            if t in wanted:
                bench.start_routed(t)
        if "pgbouncer" in wanted:
            bench.start_pgbouncer()
        time.sleep(1.0)  # the monitors' first checks
        results = {}
        for rnd in range(args.rounds):
            for workload, targets in TARGETS.items():
                order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
                if args.concurrent:
                    log(f"r{rnd}-{workload}: {', '.join(order)} at once")
                    run_together(bench, order, workload, args, rnd, results_dir, results)
                    bench.wait_replicas()
                    continue
                for target in order:
                    tag = f"r{rnd}-{workload}-{target}"
                    log(tag)
                    r = bench.run_workload(target, workload, args.duration, results_dir, tag)
                    results.setdefault((workload, target), []).append(r)
                    bench.wait_replicas()
        lines = [
            f"Routing benchmark, {stamp}: `python3 integration/bench_routing.py "
            f"--duration {args.duration} --rounds {args.rounds} --clients {args.clients} "
            f"--pool-size {args.pool_size} --workloads {args.workloads}"
            + (f" --synchronous-commit {args.synchronous_commit}" if args.synchronous_commit
               else "")
            + (f" --rate {args.rate}" if args.rate else "")
            + (f" --targets {args.targets}" if args.targets else "")
            + (" --perf" if args.perf else "")
            + (" --concurrent" if args.concurrent else "")
            + (f" --binary {args.binary}" if args.binary != os.path.join(
                B.ROOT, "target", "release", "pgsluice") else "")
            + (f" --base-binary {args.base_binary}" if args.base_binary != os.path.join(
                B.ROOT, "target", "baseline", "release", "pgsluice") else "")
            + f" --baseline-ref '{args.baseline_ref}'`; "
            f"primary + 2 streaming replicas on this machine "
            f"(2 cores, shared). Medians of {args.rounds} rounds.",
            "",
            "| workload | target | TPS | × route-off TPS | p50 ms | p99 ms | pooler CPU µs/txn "
            "| user µs/txn | system µs/txn | sleeps/txn "
            "| × route-off CPU | × route-on-base CPU | × route-on-noprobe CPU "
            "| task-clock µs/txn | × route-on-base task-clock | system calls/txn "
            "| reads on replicas | failed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for workload, targets in TARGETS.items():
            base = {k: med([r[k] for r in results[(workload, "route-off")]])
                    for k in ("tps", "cpu_us")}
            today = med([r["cpu_us"] for r in results.get((workload, "route-on-base"), [])])
            noprobe = med([r["cpu_us"] for r in results.get((workload, "route-on-noprobe"), [])])
            today_task = med([r["task_us"] for r in results.get((workload, "route-on-base"), [])
                              if r["task_us"]])
            for target in targets:
                rs = results[(workload, target)]
                row = {k: med([r[k] for r in rs])
                       for k in ("tps", "p50", "p99", "cpu_us", "user_us", "sys_us",
                                 "sleeps", "replica_share", "syscalls")}
                tasks = [r["task_us"] for r in rs if r["task_us"]]
                row["task_us"] = med(tasks) if tasks else None
                task_ratio = (row["task_us"] / today_task
                              if row["task_us"] and today_task else None)
                failed = sum(r["failed"] for r in rs if isinstance(r["failed"], int))
                tps_ratio = row["tps"] / base["tps"] if row["tps"] and base["tps"] else None
                cpu_ratio = (row["cpu_us"] / base["cpu_us"]
                             if row["cpu_us"] and base["cpu_us"] else None)
                base_ratio = row["cpu_us"] / today if row["cpu_us"] and today else None
                np_ratio = row["cpu_us"] / noprobe if row["cpu_us"] and noprobe else None
                share = f"{row['replica_share'] * 100:.0f}%" if row["replica_share"] is not None else "–"
                lines.append(
                    f"| {workload} | {target} | {fmt(row['tps'], 0)} | {fmt(tps_ratio)} "
                    f"| {fmt(row['p50'], 3)} | {fmt(row['p99'], 3)} | {fmt(row['cpu_us'], 1)} "
                    f"| {fmt(row['user_us'], 1)} | {fmt(row['sys_us'], 1)} "
                    f"| {fmt(row['sleeps'], 2)} | {fmt(cpu_ratio)} | {fmt(base_ratio, 3)} "
                    f"| {fmt(np_ratio, 3)} | {fmt(row['task_us'], 1)} | {fmt(task_ratio, 3)} "
                    f"| {fmt(row['syscalls'], 2)} | {share} | {failed} |")
        for workload in TARGETS:
            on = results.get((workload, "route-on"), [])
            for other in ("route-on-base", "route-on-noprobe"):
                them = results.get((workload, other), [])
                for key, what in (("cpu_us", "CPU (/proc)"), ("task_us", "task-clock")):
                    ratios = [a[key] / b[key] for a, b in zip(on, them) if a[key] and b[key]]
                    if ratios:
                        lines.append("")
                        lines.append(
                            f"{workload}: route-on {what} per transaction ÷ {other}'s, round "
                            "by round: " + ", ".join(f"{x:.3f}" for x in ratios)
                            + f" (median {statistics.median(ratios):.3f})")
        table = "\n".join(lines)
        print(table)
        with open(os.path.join(results_dir, "table.md"), "w") as f:
            f.write(table + "\n")
    finally:
        bench.stop_poolers()
        bench.stop_cluster()
        bench.cleanup()


if __name__ == "__main__":
    main()
