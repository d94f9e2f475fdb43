#!/usr/bin/env python3
"""User-space instructions per transaction of pgsluice, counted with callgrind.

    python3 integration/instructions.py [--binary PATH] [--baseline-binary PATH]
                                        [--clients N] [--short N] [--long N] [--reps N]

CPU time on a shared 2-core machine moves by ±20 % between two runs of the same binary
(see BENCHMARKS.md); an instruction count does not depend on what else runs. This script
starts a throwaway cluster (integration/cluster.sh, `pgbench -i -s 1`), then for each
variant runs pgsluice under `valgrind --tool=callgrind` twice, with `pgbench -n -S -c N
-t SHORT` and `-t LONG`, and reports (instructions of the long run - instructions of the
short run) / (N * (LONG - SHORT)): the instructions per transaction, startup and login
excluded. Kernel time (socket reads and writes, about 70 % of pgsluice's CPU per
transaction in a perf profile) is not counted.

Variants: `metrics on` (the defaults: statistics on, slow query log at 0.1 s), `metrics
off` (`[metrics] enabled = false`, `slow_query_threshold = 0`) and, with
--baseline-binary, `baseline` (that binary, default config). Needs valgrind
(`apt-get install valgrind`).
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_SH = os.path.join(ROOT, "integration", "cluster.sh")


def log(msg):
    print(f"instructions: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=60.0):
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


def start_cluster(cluster):
    """Starts a throwaway primary in `cluster` (stopped with `cluster.sh stop`), with
    `pgbench -i -s 1` data in database app; returns its port."""
    p = subprocess.run([CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())],
                       text=True, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"cluster.sh failed:\n{p.stderr}")
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary),
                    "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    return primary


def config(port, primary, general_extra, extra, pool_size=4):
    return f"""[general]
listen_addr = "127.0.0.1:{port}"
default_pool_size = {pool_size}
shutdown_timeout = 5
{general_extra}
[auth]
type = "md5"

[[users]]
name = "postgres"
password = "bench_pw"

[databases.app]
dbname = "app"
primary = "127.0.0.1:{primary}"
{extra}"""


def count(work, binary, conf_text, clients, txns, mode="simple", extra=(), keep=None):
    """Instructions of one pgsluice process serving clients x txns transactions; `extra`:
    more pgbench flags (`-C`: a connection per transaction); `keep`: where to copy the
    callgrind file."""
    port = free_port()
    conf = os.path.join(work, f"pgsluice-{port}.toml")
    with open(conf, "w") as f:
        f.write(conf_text.replace("{PORT}", str(port)))
    out = os.path.join(work, f"callgrind-{port}.out")
    total = callgrind_count([binary, "--config", conf], port, out,
                            os.path.join(work, f"pgsluice-{port}.log"), clients, txns, mode,
                            extra)
    if keep:
        shutil.copy(out, keep)
    return total


def callgrind_count(cmd, port, out, log, clients, txns, mode="simple", extra=(),
                    stop=signal.SIGTERM, **popen):
    """Runs `cmd` (a pooler listening on `port`) under callgrind, writing `out`, while
    `pgbench -n -S` runs clients x txns transactions through it; stops it with `stop` and
    returns its instructions. `popen`: more Popen arguments (cwd, user)."""
    logf = open(log, "w")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
                            + cmd, stdout=logf, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, **popen)
    try:
        wait_port(port, proc)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = "bench_pw"
        p = subprocess.run(["pgbench", "-n", "-S", "-M", mode, *extra, "-c", str(clients), "-j", "2",
                            "-t", str(txns), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            "app"], env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"pgbench failed against {cmd[0]}:\n{p.stdout}{p.stderr}")
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=120)
        logf.close()
    with open(out) as f:
        m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    if not m:
        raise SystemExit(f"no totals in {out}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pgsluice"))
    ap.add_argument("--baseline-binary", default=None)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--short", type=int, default=250, help="transactions per client, short run")
    ap.add_argument("--long", type=int, default=2250, help="transactions per client, long run")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--mode", default="simple", help="pgbench -M (default simple)")
    ap.add_argument("--pool-size", type=int, default=4, help="default_pool_size (default 4)")
    ap.add_argument("--general", default="",
                    help="extra [general] lines for every variant, e.g. 'slow_query_threshold = 0'"
                         " (with clients waiting under valgrind, queries pass the 0.1 s threshold)")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind not found (apt-get install valgrind)")
    work = tempfile.mkdtemp(prefix="pgsluice-instr.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    variants = [("metrics on", args.binary, "", ""),
                ("metrics off", args.binary, "slow_query_threshold = 0",
                 "\n[metrics]\nenabled = false\n")]
    if args.baseline_binary:
        variants.append(("baseline", args.baseline_binary, "", ""))
    try:
        primary = start_cluster(cluster)
        per = {name: [] for name, *_ in variants}
        delta = args.clients * (args.long - args.short)
        for rep in range(args.reps):
            for name, binary, gen, extra in variants:
                gen = "\n".join(x for x in (gen, args.general) if x)
                if "slow_query_threshold" in gen and "slow_query_threshold" in args.general:
                    gen = args.general  # --general wins over the variant's own line
                text = config("{PORT}", primary, gen, extra, args.pool_size)
                a = count(work, binary, text, args.clients, args.short, args.mode)
                b = count(work, binary, text, args.clients, args.long, args.mode)
                per[name].append((b - a) / delta)
                log(f"rep {rep + 1}: {name}: {per[name][-1]:.0f} instructions/transaction")
    finally:
        subprocess.run([CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python3 " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    print(f"`{cmd}`: pgbench -n -S -M {args.mode} -c {args.clients} -t {args.short} vs "
          f"-t {args.long}, pool size {args.pool_size}, {args.reps} repetition(s)\n")
    print("| variant | user-space instructions per transaction (each repetition) | median |")
    print("|---|---|--:|")
    for name, *_ in variants:
        vals = per[name]
        print(f"| {name} | {', '.join(f'{v:,.0f}' for v in vals)} | "
              f"{statistics.median(vals):,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
