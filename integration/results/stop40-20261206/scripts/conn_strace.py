"""System calls per connection (strace -c -f on the running pooler) for pgsluice and PgBouncer:
pgbench -n -S -C -c 10 -j 2 -t 100 (1,000 connections), md5.
    python3 conn_strace.py OUTDIR pgsluice:BIN pgbouncer:BIN ..."""
import os, re, subprocess, sys, tempfile, shutil, hashlib, signal, time
sys.path.insert(0, "/work/main/integration")
import instructions as I
outdir = sys.argv[1]; os.makedirs(outdir, exist_ok=True)
work = tempfile.mkdtemp(prefix="conn-st."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
def run(kind, binary, tag):
    port = I.free_port()
    d = os.path.join(work, f"{tag}-{port}"); os.makedirs(d)
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
        proc = subprocess.Popen([binary, conf], cwd=d, user="postgres", group="postgres", extra_groups=[],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        conf = os.path.join(d, "p.toml")
        open(conf, "w").write(I.config("{PORT}", primary, "slow_query_threshold = 0", "", 20).replace("{PORT}", str(port)))
        proc = subprocess.Popen([binary, "--config", conf], stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT)
    I.wait_port(port, proc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}; env["PGPASSWORD"] = "bench_pw"
    bench = ["pgbench", "-n", "-S", "-C", "-c", "10", "-j", "2", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "app"]
    subprocess.run(bench + ["-t", "20"], env=env, capture_output=True)  # warm the pool
    out = os.path.join(outdir, f"{tag}.strace")
    st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(proc.pid)], stderr=subprocess.DEVNULL)
    time.sleep(1)
    p = subprocess.run(bench + ["-t", "100"], env=env, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    st.send_signal(signal.SIGINT); st.wait()
    proc.terminate(); proc.wait(timeout=60)
    print(f"== {tag} (per connection, 1,000 connections)")
    for l in open(out):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$", l)
        if m: print(f"  {m.group(3):16} {int(m.group(1))/1000:6.2f}  errors {int(m.group(2) or 0)/1000:.2f}")
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    for spec in sys.argv[2:]:
        kind, binary = spec.split(":", 1)
        run(kind, binary, f"{kind}-{os.path.basename(binary)}")
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
