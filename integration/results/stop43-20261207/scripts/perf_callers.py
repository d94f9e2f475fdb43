import os, subprocess, sys, time, signal
sys.path.insert(0, "/work/main/integration")
import bench as B, floor as F
binary = sys.argv[1]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice"]
args = B.parse_args()
bench = B.Bench(args)
try:
    bench.start_warm(["pgbouncer", "pgsluice"])
    F.start_floor(bench, F.FLOOR)
    for r in range(2):
        for t in ["pgsluice", "floor"]:
            pid = bench.procs[t][1]
            data = f"/tmp/adhoc/s43/pg/perf-{t}-{r}.data"
            st = subprocess.Popen(["perf", "record", "-g", "-F", "2999", "-p", str(pid), "-o", data], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            x = bench.pgbench(t, "simple", 6, "x")
            st.send_signal(signal.SIGINT); st.wait()
            print(t, r, x["txns"], x.get("cpu_us"), x.get("user_us"), x.get("sys_us"), flush=True)
finally:
    bench.cleanup()
