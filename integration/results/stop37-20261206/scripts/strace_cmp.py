# strace -c of pgsluice under pgbench -S simple, 5 s: python3 strace_cmp.py BINARY [CLIENTS]
# (stop 36's script for one pooler; CLIENTS defaults to bench.py's 50)
import os, subprocess, sys, time, signal
sys.path.insert(0, "/work/main/integration")
import bench as B
binary = sys.argv[1]
clients = sys.argv[2:3]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice"]
if clients:
    sys.argv += ["--clients", clients[0]]
suffix = f"-c{clients[0]}" if clients else ""
bench = B.Bench(B.parse_args())
try:
    bench.start_warm(["pgbouncer", "pgsluice"])
    pid = bench.procs["pgsluice"][1]
    out = f"/tmp/adhoc/s37/strace/{os.path.basename(binary)}-simple-pgsluice{suffix}.txt"
    st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out])
    time.sleep(1)
    r = bench.pgbench("pgsluice", "simple", 5, "x")
    st.send_signal(signal.SIGINT)
    st.wait()
    print("pgsluice simple", r["txns"], flush=True)
finally:
    bench.cleanup()
