#!/usr/bin/env python3
"""User-space instructions per transaction of read-your-writes, counted with callgrind.

    python3 integration/ryw_instructions.py [--binary PATH] [--baseline-binary PATH]
                                            [--variants V,V] [--workloads W,W]
                                            [--clients N] [--short N] [--long N] [--reps N]
                                            [--annotate DIR] [--cache-sim]

CPU time on this shared 2-core machine moves by 10-30 % between rounds of the same
binary (BENCHMARKS.md, issue 15); an instruction count does not depend on what else runs.
This script starts a throwaway cluster with a primary and two streaming replicas
(integration/cluster.sh, `pgbench -i -s 1`, `synchronous_commit = on` for the benchmark
database, so that a replica replays a commit within about a millisecond, the case probes
are for), then for each variant and workload runs pgsluice (transaction mode, routing on,
pool size 10) under `valgrind --tool=callgrind` twice, with `pgbench -n -c N -t SHORT` and
`-t LONG`, and reports (instructions of the long run - instructions of the short run) /
(N * (LONG - SHORT)): the instructions per pgbench transaction, startup and login
excluded. Kernel time (socket reads and writes) is not counted.

The node monitor polls every node every `lag_check_interval` (0.1 s) whatever the load, so
the long run, which lasts longer, also pays for more polls. The script measures each
variant's idle rate (instructions per second with no client, a 3 s run against a 13 s
run) and reports, beside the raw count, the count with that rate times the difference in
wall time taken off: the cost of the transactions themselves.

Variants (all with the same config but for the routing lines):

  route-on          this build, the defaults: split on, read_your_writes = "lsn", probes
                    pipelined with the read (ryw_max_wait = 5 ms)
  route-on-noprobe  this build, ryw_probe = false: a writer's reads wait for the
                    monitor's sample (the behaviour before issue 15)
  route-on-base     --baseline-binary (default target/baseline/release/pgsluice, the
                    build of 2bcefb2^ that integration/bench_routing.py makes), route-on's
                    config: today's pooler before issue 15's read-your-writes work
  route-on-nowait   this build, ryw_max_wait = 0: a probe asks once and does not wait
  route-on-ryw-off  this build, read_your_writes = "off": every read on a replica, no
                    guarantee (what serving a writer's reads from replicas costs by itself)
  route-off         this build, read_write_split = false

Workloads:

  mixed      one UPDATE of a random account, then three SELECTs of the same row, each
             its own transaction (integration/bench_routing.py's `mixed`); a pgbench
             transaction is all four
  readonly   pgbench -S -M simple: a session that never writes
  readonly-x pgbench -S -M extended
  readonly-p pgbench -S -M prepared (named statements, prepared once per client)

Each repetition runs the variants in a rotated order. With --annotate DIR the callgrind
output files of the last repetition are kept in DIR (for callgrind_annotate; with
--cache-sim they are cachegrind's, for cg_annotate, under the same names).
With --cache-sim the processes run under `valgrind --tool=cachegrind --cache-sim=yes`
with small caches (16 KiB 4-way L1 instruction and data caches, 256 KiB last level)
instead of callgrind, and a second table gives L1 misses per transaction (the long run's
less the short run's, monitor included): how many lines of code and data a transaction
touches, which is what it costs when it runs with cold caches (a pooler at a modest rate
on cores it shares with PostgreSQL) rather than what its instructions cost warm.

Needs valgrind (`apt-get install valgrind`).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_SH = os.path.join(ROOT, "integration", "cluster.sh")

MIXED = """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
"""
WORKLOADS = {
    "mixed": (["-M", "simple", "-f", "MIXED"], 3),
    "readonly": (["-S", "-M", "simple"], 1),
    "readonly-x": (["-S", "-M", "extended"], 1),
    "readonly-p": (["-S", "-M", "prepared"], 1),
}
ROUTING = {
    "route-on": 'read_write_split = true\nread_your_writes = "lsn"',
    "route-on-noprobe": 'read_write_split = true\nread_your_writes = "lsn"\nryw_probe = false',
    "route-on-base": 'read_write_split = true\nread_your_writes = "lsn"',
    "route-on-nowait": 'read_write_split = true\nread_your_writes = "lsn"\nryw_max_wait = 0',
    "route-on-ryw-off": 'read_write_split = true\nread_your_writes = "off"',
    "route-off": "read_write_split = false",
}


def log(msg):
    print(f"ryw_instructions: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"pgsluice exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"pgsluice not listening on {port}")


def config(port, http, primary, replicas, routing):
    reps = ", ".join(f'"127.0.0.1:{p}"' for p in replicas)
    return f"""[general]
listen_addr = "127.0.0.1:{port}"
pool_mode = "transaction"
max_client_conn = 10000
default_pool_size = 10
slow_query_threshold = 0

[auth]
type = "md5"

[[users]]
name = "postgres"
password = "bench_pw"

[databases.app]
dbname = "app"
primary = "127.0.0.1:{primary}"
replicas = [{reps}]

[admin]
http_listen_addr = "127.0.0.1:{http}"

[routing]
{routing}
"""


def metrics(http):
    """Reads routed to replicas, probes, probe misses (sums over nodes)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {"replica_reads": 0.0, "probes": 0.0, "misses": 0.0}
    for line in text.splitlines():
        m = re.match(r'pgsluice_node_reads_total\{[^}]*node="(\d+)"[^}]*\} (\S+)', line)
        if m and m.group(1) != "0":
            out["replica_reads"] += float(m.group(2))
        m = re.match(r"pgsluice_node_ryw_probes_total\{[^}]*\} (\S+)", line)
        if m:
            out["probes"] += float(m.group(1))
        m = re.match(r"pgsluice_node_ryw_probe_misses_total\{[^}]*\} (\S+)", line)
        if m:
            out["misses"] += float(m.group(1))
    return out


# The cache simulation (--cache-sim): cachegrind's options, and each run's event totals
# (Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw) by output file.
CACHE_SIM = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--I1=16384,4,64",
             "--D1=16384,4,64", "--LL=262144,8,64"]
EVENTS = {}
cache_sim = False


class Run:
    """One pgsluice process under callgrind, or under the tool `wrap(out)` names (a command
    prefix writing its report to `out`, a file named after `tag` with suffix `ext`)."""

    def __init__(self, work, binary, text, tag, wrap=None, ext="callgrind"):
        self.port, self.http = free_port(), free_port()
        conf = os.path.join(work, f"{tag}.toml")
        with open(conf, "w") as f:
            f.write(text.replace("{PORT}", str(self.port)).replace("{HTTP}", str(self.http)))
        self.out = os.path.join(work, f"{tag}.{ext}")
        self.logf = open(os.path.join(work, f"{tag}.log"), "w")
        if wrap is None and cache_sim:
            prefix = CACHE_SIM + [f"--cachegrind-out-file={self.out}"]
        elif wrap is None:
            prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}"]
        else:
            prefix = wrap(self.out)
        self.proc = subprocess.Popen(
            prefix + [binary, "--config", conf], stdout=self.logf, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=dict(os.environ, NO_COLOR="1"))
        wait_port(self.port, self.proc)
        time.sleep(1.0)  # the monitor's first round

    def total(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)
        self.logf.close()
        with open(self.out) as f:
            m = re.search(r"^(?:summary|totals): ([\d ]+)", f.read(), re.M)
        if not m:
            raise SystemExit(f"no totals in {self.out}")
        events = [int(x) for x in m.group(1).split()]
        EVENTS[self.out] = events
        return events[0]


# pgbench's --rate (transactions per second over all clients; 0: as fast as it goes).
RATE = 0


def pgbench(run, work, workload, clients, txns):
    flags, _ = WORKLOADS[workload]
    if RATE:
        flags = [*flags, "-R", str(RATE)]
    flags = [os.path.join(work, "mixed.sql") if f == "MIXED" else f for f in flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = "bench_pw"
    t0 = time.monotonic()
    p = subprocess.run(["pgbench", "-n", *flags, "-c", str(clients), "-j", "2", "-t", str(txns),
                        "-h", "127.0.0.1", "-p", str(run.port), "-U", "postgres", "app"],
                       env=env, text=True, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"pgbench failed:\n{p.stdout}{p.stderr}")
    return time.monotonic() - t0


def count(work, binary, text, tag, workload, clients, txns):
    """(instructions, seconds the process lived, metrics) of one process serving
    clients x txns pgbench transactions."""
    t0 = time.monotonic()
    run = Run(work, binary, text, tag)
    pgbench(run, work, workload, clients, txns)
    m = metrics(run.http)
    seconds = time.monotonic() - t0
    return run.total(), seconds, m


def idle_rate(work, binary, text, tag):
    """Instructions per second of a process with no client (the monitor's polls)."""
    totals = []
    for secs in (3, 13):
        t0 = time.monotonic()
        run = Run(work, binary, text, f"{tag}-idle{secs}")
        time.sleep(secs)
        lived = time.monotonic() - t0
        totals.append((run.total(), lived))
    (a, ta), (b, tb) = totals
    return (b - a) / (tb - ta)


def start_cluster(cluster):
    """A primary and two streaming replicas in `cluster` (stopped with the calling process),
    the pgbench tables, and `synchronous_commit = on` for the benchmark database: returns the
    primary's port and the replicas' ports."""
    p = subprocess.run([CLUSTER_SH, "start", cluster, "--replicas", "2",
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
    time.sleep(2)  # the replicas catch up with the load
    return primary, replicas


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pgsluice"))
    ap.add_argument("--baseline-binary",
                    default=os.path.join(ROOT, "target", "baseline", "release", "pgsluice"))
    ap.add_argument("--variants", default="route-on,route-on-noprobe,route-on-base")
    ap.add_argument("--workloads", default="mixed,readonly")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--short", type=int, default=20, help="transactions per client, short run")
    ap.add_argument("--long", type=int, default=170, help="transactions per client, long run")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--annotate", help="keep the last repetition's callgrind files here")
    ap.add_argument("--cache-sim", action="store_true",
                    help="cachegrind with small simulated caches instead of callgrind; "
                         "also report L1 misses per transaction")
    args = ap.parse_args()
    global cache_sim
    cache_sim = args.cache_sim
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    variants = args.variants.split(",")
    workloads = args.workloads.split(",")
    for v in variants:
        if v not in ROUTING:
            raise SystemExit(f"unknown variant {v}")
    work = tempfile.mkdtemp(prefix="pgsluice-rywinstr.")
    os.chmod(work, 0o755)
    with open(os.path.join(work, "mixed.sql"), "w") as f:
        f.write(MIXED)
    cluster = os.path.join(work, "cluster")
    per = {}
    misses_per = {}
    raw = {}
    rates = {}
    try:
        primary, replicas = start_cluster(cluster)
        binaries = {v: args.baseline_binary if v == "route-on-base" else args.binary
                    for v in variants}
        texts = {v: config("{PORT}", "{HTTP}", primary, replicas, ROUTING[v]) for v in variants}
        for v in variants:
            rates[v] = idle_rate(work, binaries[v], texts[v], v)
            log(f"{v}: idle {rates[v]:,.0f} instructions/s")
        delta = args.clients * (args.long - args.short)
        for rep in range(args.reps):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for w in workloads:
                for v in order:
                    tag = f"r{rep}-{w}-{v}"
                    a, ta, ma = count(work, binaries[v], texts[v], tag + "-short", w,
                                      args.clients, args.short)
                    b, tb, mb = count(work, binaries[v], texts[v], tag + "-long", w,
                                      args.clients, args.long)
                    raw_per = (b - a) / delta
                    net = (b - a - rates[v] * (tb - ta)) / delta
                    reads = WORKLOADS[w][1] * delta
                    share = (mb["replica_reads"] - ma["replica_reads"]) / reads
                    probes = (mb["probes"] - ma["probes"]) / delta
                    misses = (mb["misses"] - ma["misses"]) / delta
                    per.setdefault((w, v), []).append(net)
                    if cache_sim:
                        ea = EVENTS[os.path.join(work, f"{tag}-short.callgrind")]
                        eb = EVENTS[os.path.join(work, f"{tag}-long.callgrind")]
                        misses_per.setdefault((w, v), []).append(
                            [(y - x) / delta for x, y in zip(ea, eb)])
                    raw.setdefault((w, v), []).append(
                        (raw_per, tb - ta, share, probes, misses))
                    log(f"rep {rep + 1}: {w} {v}: {raw_per:,.0f} raw, {net:,.0f} net "
                        f"instructions/transaction ({tb - ta:.1f} s more; replica reads "
                        f"{share:.0%}, probes {probes:.2f} and misses {misses:.3f} per txn)")
                    if args.annotate and rep == args.reps - 1:
                        os.makedirs(args.annotate, exist_ok=True)
                        for suffix in ("short", "long"):
                            shutil.copy(os.path.join(work, f"{tag}-{suffix}.callgrind"),
                                        args.annotate)
    finally:
        subprocess.run([CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python3 " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    ref = "route-on-noprobe" if "route-on-noprobe" in variants else variants[0]
    base = "route-on-base" if "route-on-base" in variants else None
    print(f"`{cmd}`: {args.clients} clients, pool size 10, -t {args.short} vs -t "
          f"{args.long}, {args.reps} repetition(s), primary + 2 replicas, "
          f"synchronous_commit = on\n")
    print("Idle instructions per second (the monitor): "
          + ", ".join(f"{v} {rates[v]:,.0f}" for v in variants) + "\n")
    head = "| workload | variant | net instructions per transaction (each repetition) | median "
    head += f"| × {ref} |" + (f" × {base} |" if base else "")
    head += (" raw (monitor included), median | replica reads | probes / txn "
             "| probe misses / txn (each repetition) |")
    print(head)
    print("|---|---|---|--:|--:|" + ("--:|" if base else "") + "--:|--:|--:|---|")
    for w in workloads:
        for v in variants:
            vals = per[(w, v)]
            md = statistics.median(vals)
            r_ref = md / statistics.median(per[(w, ref)])
            cells = [w, v, ", ".join(f"{x:,.0f}" for x in vals), f"{md:,.0f}", f"{r_ref:.3f}"]
            if base:
                cells.append(f"{md / statistics.median(per[(w, base)]):.3f}")
            rs = raw[(w, v)]
            cells += [f"{statistics.median(x[0] for x in rs):,.0f}",
                      f"{statistics.median(x[2] for x in rs):.0%}",
                      f"{statistics.median(x[3] for x in rs):.2f}",
                      ", ".join(f"{x[4]:.3f}" for x in rs)]
            print("| " + " | ".join(cells) + " |")
    if cache_sim:
        print("\nPer transaction (long run less short run, monitor included), cachegrind with "
              "16 KiB L1 caches; medians over repetitions:\n")
        print("| workload | variant | instructions | L1 instruction misses "
              "| L1 data read misses | L1 data write misses | last-level misses |")
        print("|---|---|--:|--:|--:|--:|--:|")
        for w in workloads:
            for v in variants:
                rows = misses_per[(w, v)]
                col = [statistics.median(r[i] for r in rows) for i in range(9)]
                print(f"| {w} | {v} | {col[0]:,.0f} | {col[1]:,.0f} | {col[4]:,.0f} "
                      f"| {col[7]:,.0f} | {col[2] + col[5] + col[8]:,.0f} |")
    for w in workloads:
        for other in (ref, base):
            if other and other != "route-on" and "route-on" in variants:
                ratios = [a / b for a, b in zip(per[(w, "route-on")], per[(w, other)])]
                print(f"\n{w}: route-on ÷ {other}, repetition by repetition: "
                      + ", ".join(f"{x:.3f}" for x in ratios)
                      + f" (median {statistics.median(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
