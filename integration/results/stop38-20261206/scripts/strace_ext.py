# strace -c of pgsluice and PgBouncer under pgbench -S, 1 client: python3 strace_ext.py BINARY MODE
import subprocess, sys, time, signal
sys.path.insert(0, "/work/main/integration")
import bench as B
binary, mode = sys.argv[1], sys.argv[2]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice", "--clients", "1"]
bench = B.Bench(B.parse_args())
try:
    bench.start_warm(["pgbouncer", "pgsluice"])
    for t in ["pgbouncer", "pgsluice"]:
        pid = bench.procs[t][1]
        out = f"/tmp/adhoc/s38/strace/{t}-{mode}-c1.txt"
        st = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out])
        time.sleep(1)
        r = bench.pgbench(t, mode, 5, "x")
        st.send_signal(signal.SIGINT)
        st.wait()
        print(t, mode, r["txns"], flush=True)
finally:
    bench.cleanup()
