import os, subprocess, sys, time, signal
sys.path.insert(0, "/work/main/integration")
import bench as B, floor as F
B_BIN = sys.argv[1]; sys.argv = ["bench.py", "--no-build", "--binary", sys.argv[1], "--targets", "pgbouncer,pgsluice", "--clients", "1"]

args = B.parse_args()
bench = B.Bench(args)
try:
    bench.start_warm(["pgbouncer", "pgsluice"])

    for mode in ["simple"]:
        for t in ["pgsluice"]:
            pid = bench.procs[t][1]
            st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", f"/tmp/adhoc/s37/strace/{os.path.basename(B_BIN)}-{mode}-{t}-c1.txt"])
            time.sleep(1)
            r = bench.pgbench(t, mode, 5, "x")
            st.send_signal(signal.SIGINT); st.wait()
            print(t, mode, r["txns"], flush=True)
finally:
    bench.cleanup()
