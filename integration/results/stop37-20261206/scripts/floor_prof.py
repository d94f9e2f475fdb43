import os, re, subprocess, sys, tempfile, shutil, signal
sys.path.insert(0, "/work/main/integration")
import instructions as I
binary, mode, rt = sys.argv[1], sys.argv[2], sys.argv[3]
work = tempfile.mkdtemp(prefix="floor-instr."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
def count(txns):
    port = I.free_port(); out = f"/tmp/adhoc/s37/cg-{rt}-{mode}-{txns}.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "--listen", f"127.0.0.1:{port}", "--server", f"127.0.0.1:{primary}", "--database", "app", "--servers", "20", "--runtime", rt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    I.wait_port(port, proc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    p = subprocess.run(["pgbench", "-n", "-S", "-M", mode, "-c", "50", "-j", "2", "-t", str(txns), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "app"], env=env, text=True, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    proc.send_signal(signal.SIGINT); proc.wait(timeout=120)
    return int(re.search(r"^(?:summary|totals): (\d+)", open(out).read(), re.M).group(1))
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
    a = count(40); b = count(640)
    print(binary, rt, mode, (b - a) / 30000, flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    pass
