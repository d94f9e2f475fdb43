import os, subprocess, sys, time, signal
sys.path.insert(0, "/work/main/integration")
import bench as B
binary, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgsluice"]
args = B.parse_args()
bench = B.Bench(args)
try:
    bench.start_warm(["pgsluice"])
    pid = bench.procs["pgsluice"][1]
    st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out])
    time.sleep(1)
    r = bench.pgbench("pgsluice", mode, 5, "x")
    st.send_signal(signal.SIGINT); st.wait()
    print("pgsluice", mode, r["txns"], flush=True)
finally:
    bench.cleanup()
