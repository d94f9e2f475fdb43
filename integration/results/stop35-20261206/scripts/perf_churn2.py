import os, subprocess, sys, time
sys.path.insert(0, "/work/main/integration")
import bench as B
binary, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice", "--modes", "simple"]
args = B.parse_args(); bench = B.Bench(args)
try:
    bench.start_cluster()
    for t in ("pgbouncer", "pgsluice"):
        bench.start_pgbouncer(t) if t == "pgbouncer" else bench.start_pgsluice(t)
        bench.pgbench(t, "simple", 2, "warmup", connect=True)
    for r in range(2):
        for t in ("pgbouncer", "pgsluice"):
            pid = bench.procs[t][1]
            data = os.path.join(bench.work, f"{t}.perf.data")
            rec = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-p", str(pid), "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            res = bench.pgbench(t, "simple", 8, f"r{r}{t}", connect=True)
            rec.send_signal(2); rec.wait(timeout=120)
            rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio", "-q"], capture_output=True, text=True).stdout
            with open(os.path.join(out, f"r{r}-{t}.txt"), "w") as f:
                f.write(f"tps {res.get('tps')} user {res.get('user_us')} sys {res.get('sys_us')} txns {res.get('txns')}\n" + rep)
            os.unlink(data)
            print(t, res.get("tps"), res.get("user_us"), res.get("sys_us"), flush=True)
finally:
    bench.cleanup()
