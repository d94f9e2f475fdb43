import os, subprocess, sys, time
sys.path.insert(0, "/work/main/integration")
import bench as B, floor as F
sys.argv = ["bench.py", "--no-build", "--binary", sys.argv[1], "--targets", "pgbouncer,pgsluice"]
args = B.parse_args()
bench = B.Bench(args)
def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[7]), int(f[9])  # minflt, majflt
def ctx(pid):
    v = n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        for line in open(f"/proc/{pid}/task/{tid}/status"):
            if line.startswith("voluntary_ctxt_switches"): v += int(line.split()[1])
            if line.startswith("nonvoluntary_ctxt_switches"): n += int(line.split()[1])
    return v, n
try:
    bench.start_warm(["pgbouncer", "pgsluice"])
    F.start_floor(bench, F.FLOOR)
    for t in ["pgbouncer", "pgsluice", "floor"] * 2:
        pid = bench.procs[t][1]
        a = stat(pid); ca = ctx(pid)
        r = bench.pgbench(t, "simple", 5, "x")
        b = stat(pid); cb = ctx(pid)
        n = r["txns"]
        print(f"{t:10} txns {n} minflt/txn {(b[0]-a[0])/n:.4f} vol/txn {(cb[0]-ca[0])/n:.4f} invol/txn {(cb[1]-ca[1])/n:.4f} threads {len(os.listdir(f'/proc/{pid}/task'))} cpu {r['cpu_us']:.2f}", flush=True)
finally:
    bench.cleanup()
