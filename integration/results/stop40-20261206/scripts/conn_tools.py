"""What a pgbench -C connection costs a pooler, for pgsluice and PgBouncer binaries side by side:

    python3 conn_tools.py cachesim OUTDIR pgsluice:BIN... pgbouncer:BIN...
    python3 conn_tools.py strace OUTDIR pgsluice:BIN... pgbouncer:BIN...
    python3 conn_tools.py strace --clients 1 [--txns N] [--no-connect] OUTDIR SPEC...   (stop 41)

cachesim: cachegrind with simulated 16-KiB 4-way L1s and a 256-KiB 8-way last level (as
ryw_instructions.py --cache-sim) over pgbench -n -S -C -c 10 -j 2, -t 20 and -t 120; prints
the events per connection (difference / 1,000) and keeps the files in OUTDIR.
strace: strace -c -f attached to the running pooler over -t 100 (1,000 connections, after
-t 20 to warm its pool); prints the calls per connection and keeps strace's table in OUTDIR.
md5 logins, pool size 20, transaction mode, one throwaway cluster.
Stop 41 added, for strace: --clients N (pgbench -c N -j min(N, 2); default 10), --txns N
(per client, default 100: the counts are divided by clients * txns) and --no-connect
(no -C: calls per transaction instead of per connection)."""
import hashlib, os, re, shutil, signal, subprocess, sys, tempfile, time
sys.path.insert(0, "/work/main/integration")
import instructions as I  # noqa: E402 (cluster, config and port helpers)

CACHESIM = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--I1=16384,4,64", "--D1=16384,4,64",
            "--LL=262144,8,64"]
BENCH = ["pgbench", "-n", "-S", "-C", "-c", "10", "-j", "2", "-U", "postgres", "-h", "127.0.0.1"]
TXNS = 100
ENV = dict({k: v for k, v in os.environ.items() if not k.startswith("PG")}, PGPASSWORD="bench_pw")


def start(kind, binary, work, primary, prefix=()):
    """Starts a pooler (under `prefix`); returns (process, port, signal that stops it)."""
    port = I.free_port()
    d = os.path.join(work, f"{kind}-{port}")
    os.makedirs(d)
    if kind == "pgbouncer":
        md5 = "md5" + hashlib.md5(b"bench_pwpostgres").hexdigest()
        with open(os.path.join(d, "userlist.txt"), "w") as f:
            f.write(f'"postgres" "{md5}"\n')
        conf = os.path.join(d, "pgbouncer.ini")
        with open(conf, "w") as f:
            f.write(f"[databases]\napp = host=127.0.0.1 port={primary} dbname=app\n[pgbouncer]\n"
                    f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = md5\n"
                    f"auth_file = {d}/userlist.txt\npool_mode = transaction\ndefault_pool_size = 20\n"
                    f"max_client_conn = 1000\nignore_startup_parameters = extra_float_digits,options\n"
                    f"logfile = {d}/pgbouncer.log\n")
        subprocess.run(["chown", "-R", "postgres:postgres", d])
        proc = subprocess.Popen([*prefix, binary, conf], cwd=d, user="postgres", group="postgres",
                                extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = signal.SIGINT
    else:
        conf = os.path.join(d, "pgsluice.toml")
        with open(conf, "w") as f:
            f.write(I.config("{PORT}", primary, "slow_query_threshold = 0", "", 20).replace("{PORT}", str(port)))
        proc = subprocess.Popen([*prefix, binary, "--config", conf], stdout=open(os.path.join(d, "log"), "w"),
                                stderr=subprocess.STDOUT)
        stop = signal.SIGTERM
    I.wait_port(port, proc)
    return proc, port, stop


def pgbench(port, txns):
    p = subprocess.run(BENCH + ["-p", str(port), "-t", str(txns), "app"], env=ENV, text=True,
                       capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr


def cachesim(kind, binary, tag, work, primary, outdir):
    totals = {}
    for txns in (20, 120):
        out = os.path.join(outdir, f"{tag}-{txns}.cachegrind")
        proc, port, stop = start(kind, binary, work, primary, CACHESIM + [f"--cachegrind-out-file={out}"])
        pgbench(port, txns)
        proc.send_signal(stop)
        proc.wait(timeout=120)
        text = open(out).read()
        names = re.search(r"^events: (.*)$", text, re.M).group(1).split()
        counts = map(int, re.search(r"^summary: (.*)$", text, re.M).group(1).split())
        totals[txns] = dict(zip(names, counts))
    per = {k: (totals[120][k] - totals[20][k]) / 1000 for k in totals[20]}
    print(f"| {tag} | {per['Ir']:,.0f} | {per['I1mr']:,.0f} | {per['D1mr']:,.0f} | {per['D1mw']:,.0f} "
          f"| {per['ILmr']:,.0f} | {per['DLmr'] + per['DLmw']:,.0f} |", flush=True)


def strace(kind, binary, tag, work, primary, outdir):
    proc, port, stop = start(kind, binary, work, primary)
    pgbench(port, 20)
    out = os.path.join(outdir, f"{tag}.strace")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(proc.pid)], stderr=subprocess.DEVNULL)
    time.sleep(1)
    pgbench(port, TXNS)
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    proc.send_signal(stop)
    proc.wait(timeout=60)
    clients = int(BENCH[BENCH.index("-c") + 1])
    n = clients * TXNS
    what = "connection" if "-C" in BENCH else "transaction"
    print(f"== {tag} (per {what}, {n:,} of them, {clients} client(s))")
    for line in open(out):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$", line)
        if m:
            print(f"  {m.group(3):16} {int(m.group(1)) / n:6.2f}  errors {int(m.group(2) or 0) / n:.2f}")


def options(args):
    """Takes stop 41's strace options off the front of `args`."""
    global TXNS
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--clients":
            c = args.pop(0)
            BENCH[BENCH.index("-c") + 1] = c
            BENCH[BENCH.index("-j") + 1] = str(min(int(c), 2))
        elif flag == "--txns":
            TXNS = int(args.pop(0))
        elif flag == "--no-connect":
            BENCH.remove("-C")
        else:
            raise SystemExit(__doc__)
    return args


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("cachesim", "strace"):
        raise SystemExit(__doc__)
    tool = sys.argv[1]
    rest = options(sys.argv[2:])
    outdir, specs = rest[0], rest[1:]
    os.makedirs(outdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="conn-tools.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    try:
        p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True,
                           capture_output=True)
        primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
        subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres",
                        "app"], env=ENV, check=True, capture_output=True)
        if tool == "cachesim":
            print("| binary | Ir | I1mr | D1mr | D1mw | ILmr | DLmr+DLmw |", flush=True)
        for spec in specs:
            kind, binary = spec.split(":", 1)
            tag = f"{kind}-{os.path.basename(os.path.dirname(binary))}-{os.path.basename(binary)}"
            (cachesim if tool == "cachesim" else strace)(kind, binary, tag, work, primary, outdir)
    finally:
        subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
