import os, re, subprocess, sys, tempfile, shutil
sys.path.insert(0, "/work/main/integration")
import instructions as I
binary, outdir = sys.argv[1], sys.argv[2]
cl = [int(x) for x in sys.argv[3].split(",")]
mode = sys.argv[4]; short, long_ = int(sys.argv[5]), int(sys.argv[6])
os.makedirs(outdir, exist_ok=True)
work = tempfile.mkdtemp(prefix="pgsluice-instr."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    for c in cl:
        text = I.config("{PORT}", primary, "slow_query_threshold = 0\nmax_client_conn = 5000", "", 20)
        name = os.path.basename(binary)
        a = I.count(work, binary, text, c, short, mode, keep=os.path.join(outdir, f"{name}-c{c}-{short}.out"))
        b = I.count(work, binary, text, c, long_, mode, keep=os.path.join(outdir, f"{name}-c{c}-{long_}.out"))
        print(c, (b - a) / (c * (long_ - short)), flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
