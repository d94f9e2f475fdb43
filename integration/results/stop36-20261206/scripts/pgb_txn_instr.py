import os, re, subprocess, sys, tempfile, shutil, hashlib, signal, time
sys.path.insert(0, "/work/main/integration")
import instructions as I
binary, outdir, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(outdir, exist_ok=True)
work = tempfile.mkdtemp(prefix="pgb-instr."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
def count(txns):
    port = I.free_port()
    d = os.path.join(work, f"pgb{port}"); os.makedirs(d)
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
max_prepared_statements = 100
ignore_startup_parameters = extra_float_digits,options
logfile = {d}/pgbouncer.log
""")
    out = os.path.join(d, "cg.out")
    subprocess.run(["chown", "-R", "postgres:postgres", d])
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, conf], cwd=d,
                            user="postgres", group="postgres", extra_groups=[], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    I.wait_port(port, proc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}; env["PGPASSWORD"] = "bench_pw"
    p = subprocess.run(["pgbench", "-n", "-S", "-M", MODE, "-c", "50", "-j", "2", "-t", str(txns), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "app"], env=env, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    proc.send_signal(signal.SIGINT); proc.wait(timeout=120)
    shutil.copy(out, os.path.join(outdir, f"{os.path.basename(os.path.dirname(binary)) or 'pgb'}-{os.path.basename(binary)}-{MODE}-{txns}.out"))
    return int(re.search(r"^(?:summary|totals): (\d+)", open(out).read(), re.M).group(1))
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    for rep in range(1):
        a = count(40); b = count(640)
        print(binary, MODE, (b - a) / 30000, flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
