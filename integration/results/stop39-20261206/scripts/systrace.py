# perf trace of syscalls of pgsluice and PgBouncer under pgbench -S, 1 client
import subprocess, sys, time, signal, os
sys.path.insert(0, "/work/main/integration")
import bench as B
binary, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
targets = sys.argv[4].split(",") if len(sys.argv) > 4 else ["pgbouncer", "pgsluice"]
os.makedirs(out, exist_ok=True)
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", ",".join(targets), "--clients", os.environ.get("CLIENTS","1"),
            "--pgbouncer-new", "/work/pgbouncer-1.25.2/pgbouncer"]
bench = B.Bench(B.parse_args())
try:
    bench.start_warm(targets)
    for t in targets:
        pid = bench.procs[t][1]
        data = f"{out}/{t}-{mode}.data"
        st = subprocess.Popen(["perf", "record", "-q", "-e", "raw_syscalls:sys_enter,raw_syscalls:sys_exit,sched:sched_switch,sched:sched_wakeup",
                               "-p", str(pid), "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        r = bench.pgbench(t, mode, 3, "x")
        st.send_signal(signal.SIGINT)
        st.wait()
        print(t, mode, r["txns"], flush=True)
finally:
    bench.cleanup()
