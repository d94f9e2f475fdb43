import os, re, subprocess, sys, time
sys.path.insert(0, "/work/main/integration")
import bench as B
binary = sys.argv[1]; clients = sys.argv[2]; mode = sys.argv[3]
extra = sys.argv[4:]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice", "--modes", mode] + extra
args = B.parse_args(); bench = B.Bench(args)
def rss(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
try:
    bench.start_cluster()
    ts = ["pgbouncer", "pgsluice"] + (["pgsluice-baseline"] if "--baseline-binary" in extra else [])
    for t in ts:
        bench.start_pgbouncer(t) if t == "pgbouncer" else bench.start_pgsluice(t)
        bench.pgbench(t, "simple", 2, "warmup")
    for t in ts:
        pid = bench.procs[t][1]
        before = rss(pid)
        cmd = ["pgbench", "-n", "-S", "-M", mode, "-c", clients, "-j", "2", "-T", "10", "-h", "127.0.0.1", "-p", str(bench.ports[t]), "-U", B.USER, B.DATABASE]
        p = subprocess.Popen(cmd, env=bench.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        samples = []
        for i in range(8):
            time.sleep(1); samples.append(rss(pid))
        out = p.communicate()[0]
        tps = re.search(r"tps = ([\d.]+)", out).group(1)
        print(t, "rss before", before, "KiB; during run (KiB):", samples[2:], "max", max(samples), "per client KiB", round((max(samples) - before) / int(clients), 2), "tps", tps, flush=True)
finally:
    bench.cleanup()
