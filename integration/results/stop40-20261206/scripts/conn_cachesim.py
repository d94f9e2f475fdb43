"""Per-connection cachegrind events (simulated 16 KiB L1s, 256 KiB LL) for pgsluice and
PgBouncer binaries: pgbench -n -S -C -c 10 -j 2, -t 20 and -t 120, md5 login.
    python3 conn_cachesim.py OUTDIR pgsluice:BIN... pgbouncer:BIN..."""
import os, re, subprocess, sys, tempfile, shutil, hashlib, signal
sys.path.insert(0, "/work/main/integration")
import instructions as I
CS = ["valgrind", "--tool=cachegrind", "--cache-sim=yes", "--I1=16384,4,64", "--D1=16384,4,64", "--LL=262144,8,64"]
outdir = sys.argv[1]; os.makedirs(outdir, exist_ok=True)
work = tempfile.mkdtemp(prefix="conn-cs."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
def events(out):
    t = open(out).read()
    ev = re.search(r"^events: (.*)$", t, re.M).group(1).split()
    sm = [int(x) for x in re.search(r"^summary: (.*)$", t, re.M).group(1).split()]
    return dict(zip(ev, sm))
def run(kind, binary, txns, tag):
    port = I.free_port()
    d = os.path.join(work, f"{tag}-{port}"); os.makedirs(d)
    out = os.path.join(d, "cg.out")
    if kind == "pgbouncer":
        md5 = "md5" + hashlib.md5(("bench_pw" + "postgres").encode()).hexdigest()
        open(os.path.join(d, "userlist.txt"), "w").write(f'"postgres" "{md5}"\n')
        conf = os.path.join(d, "pgbouncer.ini")
        open(conf, "w").write(f"""[databases]
app = host=127.0.0.1 port={primary} dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {d}/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits,options
logfile = {d}/pgbouncer.log
""")
        subprocess.run(["chown", "-R", "postgres:postgres", d])
        proc = subprocess.Popen(CS + [f"--cachegrind-out-file={out}", binary, conf], cwd=d, user="postgres",
                                group="postgres", extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = signal.SIGINT
    else:
        conf = os.path.join(d, "p.toml")
        open(conf, "w").write(I.config("{PORT}", primary, "slow_query_threshold = 0", "", 20).replace("{PORT}", str(port)))
        proc = subprocess.Popen(CS + [f"--cachegrind-out-file={out}", binary, "--config", conf],
                                stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT)
        stop = signal.SIGTERM
    I.wait_port(port, proc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}; env["PGPASSWORD"] = "bench_pw"
    p = subprocess.run(["pgbench", "-n", "-S", "-C", "-c", "10", "-j", "2", "-t", str(txns), "-h", "127.0.0.1",
                        "-p", str(port), "-U", "postgres", "app"], env=env, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    proc.send_signal(stop); proc.wait(timeout=120)
    shutil.copy(out, os.path.join(outdir, f"{tag}-{txns}.cachegrind"))
    return events(out)
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    print("| binary | Ir | I1mr | D1mr | D1mw | ILmr | DLmr+DLmw |", flush=True)
    for spec in sys.argv[2:]:
        kind, binary = spec.split(":", 1)
        tag = f"{kind}-{os.path.basename(os.path.dirname(binary))}-{os.path.basename(binary)}"
        a = run(kind, binary, 20, tag); b = run(kind, binary, 120, tag)
        per = {k: (b[k] - a[k]) / 1000 for k in a}
        print(f"| {tag} | {per['Ir']:,.0f} | {per['I1mr']:,.0f} | {per['D1mr']:,.0f} | {per['D1mw']:,.0f} | {per['ILmr']:,.0f} | {per['DLmr']+per['DLmw']:,.0f} |", flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
