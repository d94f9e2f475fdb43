#!/usr/bin/env python3
"""What a trip through the lot costs (issue 14, `park_idle_after`): pooler CPU per
transaction when clients pause between transactions, for each park delay given.

    python3 integration/park_cycle.py BINARY CLIENTS RATE SECONDS PARK[,PARK...] ROUNDS

Starts a throwaway cluster (`pgbench -i -s 1`), then per round and per delay a fresh
pgsluice (transaction mode, pool size 20, `park_idle_after = PARK`, 0 = never park) and
`pgbench -n -S -c CLIENTS -j 2 -R RATE -T SECONDS`: with RATE/CLIENTS transactions per
second per client, each client pauses about CLIENTS/RATE seconds between transactions, so
with a delay below that every transaction comes from a parked client. Pooler CPU is
utime + stime of /proc/PID/stat over the run (10 ms ticks: keep CPU time well above that).
The order of the delays alternates per round. Prints each run and the medians.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I  # noqa: E402 (cluster and config helpers)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    if len(sys.argv) != 7:
        raise SystemExit(__doc__)
    binary, clients, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    parks, rounds = sys.argv[5].split(","), int(sys.argv[6])
    work = tempfile.mkdtemp(prefix="pgsluice-park.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())],
                       text=True, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    try:
        primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
        subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary),
                        "-U", "postgres", "app"], env=env, check=True, capture_output=True)
        per_txn = {pk: [] for pk in parks}
        for r in range(rounds):
            for pk in (parks if r % 2 == 0 else list(reversed(parks))):
                port = I.free_port()
                text = I.config(port, primary, f"park_idle_after = {pk}\nmax_client_conn = 5000", "", 20)
                conf = os.path.join(work, f"pgsluice-{port}.toml")
                open(conf, "w").write(text)
                proc = subprocess.Popen([binary, "--config", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                try:
                    I.wait_port(port, proc)
                    c0 = cpu_seconds(proc.pid)
                    out = subprocess.run(
                        ["pgbench", "-n", "-S", "-c", str(clients), "-j", "2", "-R", str(rate),
                         "-T", str(seconds), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "app"],
                        env=dict(env, PGPASSWORD="bench_pw"), text=True, capture_output=True).stdout
                    c1 = cpu_seconds(proc.pid)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait()
                n = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
                lat = re.search(r"latency average = ([\d.]+) ms", out)
                per_txn[pk].append((c1 - c0) / n * 1e6)
                print(f"round {r} park {pk}: {n} txns, CPU {c1 - c0:.2f} s, "
                      f"{(c1 - c0) / n * 1e6:.1f} us/txn, latency avg {lat.group(1) if lat else '?'} ms",
                      flush=True)
        for pk in parks:
            v = sorted(per_txn[pk])
            print(f"park {pk}: median {v[len(v) // 2]:.1f} us/txn  all {[round(x, 1) for x in per_txn[pk]]}")
    finally:
        subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)


main()
