import os, subprocess, sys, time
sys.path.insert(0, "/work/main/integration")
import bench as B
binary, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
clients_list = [int(x) for x in sys.argv[4].split(",")]
target = sys.argv[5] if len(sys.argv) > 5 else "pgsluice"
os.makedirs(out, exist_ok=True)
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", target, "--modes", mode]
args = B.parse_args()
bench = B.Bench(args)
try:
    bench.start_cluster()
    if target.startswith("pgbouncer"):
        bench.start_pgbouncer(target)
    else:
        bench.start_pgsluice(target)
    bench.pgbench(target, "simple", 2, "warmup")
    for r in range(2):
        for c in clients_list:
            pid = bench.procs[target][1]
            data = os.path.join(bench.work, f"c{c}.perf.data")
            rec = subprocess.Popen(["perf", "record", "-q", "-F", "2999", "-p", str(pid), "-o", data],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            res = bench.pgbench(target, mode, 8, f"r{r}c{c}", clients=c)
            rec.send_signal(2); rec.wait(timeout=120)
            rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym",
                                  "--stdio", "-q"], capture_output=True, text=True).stdout
            with open(os.path.join(out, f"r{r}-c{c}.txt"), "w") as f:
                f.write(f"tps {res.get('tps')} user {res.get('user_us')} sys {res.get('sys_us')} txns {res.get('txns')}\n")
                f.write(rep)
            os.unlink(data)
            print(c, res.get("tps"), res.get("user_us"), res.get("sys_us"), flush=True)
finally:
    bench.cleanup()
