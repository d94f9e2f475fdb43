import os, subprocess, sys, time, signal, re, collections
sys.path.insert(0, "/work/main/integration")
import bench as B, floor as F
binary, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgbouncer,pgsluice"]
args = B.parse_args()
bench = B.Bench(args)
res = collections.defaultdict(collections.Counter); txns = collections.Counter()
try:
    bench.start_warm(["pgbouncer", "pgsluice"])
    F.start_floor(bench, F.FLOOR)
    for r in range(rounds):
        for t in ["pgbouncer", "pgsluice", "floor"]:
            pid = bench.procs[t][1]
            data = f"/tmp/adhoc/s36/perf-{t}.data"
            st = subprocess.Popen(["perf", "record", "-F", "4999", "-p", str(pid), "-o", data], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            x = bench.pgbench(t, mode, 6, "x")
            st.send_signal(signal.SIGINT); st.wait()
            txns[t] += x["txns"]
            out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym", "-n"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
                if m:
                    res[t][(m.group(3), m.group(2)[:20], m.group(4).strip()[:60])] += int(m.group(1))
            print(t, x["txns"], x.get("cpu_us"), x.get("user_us"), x.get("sys_us"), flush=True)
finally:
    bench.cleanup()
F_HZ = 4999
def per(t, k): return res[t][k] / txns[t] / F_HZ * 1e6  # us per txn
for t in res:
    k_tot = sum(per(t, k) for k in res[t] if k[0] == 'k'); u_tot = sum(per(t, k) for k in res[t] if k[0] != 'k')
    print(f"{t}: kernel {k_tot:.2f} us/txn, user {u_tot:.2f}")
keys = set(res["pgsluice"]) | set(res["floor"])
print("kernel symbols, pgsluice - floor (us/txn):")
for k in sorted(keys, key=lambda k: -(per("pgsluice", k) - per("floor", k)))[:40]:
    print(f"{per('pgsluice',k)-per('floor',k):+.3f}  pgs {per('pgsluice',k):.3f} floor {per('floor',k):.3f} pgb {per('pgbouncer',k):.3f}  {k}")
