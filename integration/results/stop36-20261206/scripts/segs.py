#!/usr/bin/env python3
"""TCP segments (and pure ACKs, delayed ACKs) per pgbench -S transaction, per target."""
import os, re, subprocess, sys
sys.path.insert(0, "/work/main/integration")
import bench as B

def pstat():
    d = {}
    for line in open("/proc/stat"):
        p = line.split()
        if p[0] == "cpu":
            v = list(map(int, p[1:]))
            d["busy"] = (sum(v) - v[3] - v[4]) * 10000  # us (100 Hz)
        elif p[0] == "ctxt":
            d["ctxt"] = int(p[1])
    return d

def nstat():
    out = subprocess.run(["nstat", "-az"], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 2 and p[1].isdigit():
            d[p[0]] = int(p[1])
    return d

KEYS = ["TcpOutSegs"]
modes = sys.argv[1].split(",")
binary = sys.argv[2]
clients = sys.argv[3] if len(sys.argv) > 3 else "50"
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--pgbouncer-new", "/work/pgbouncer-1.25.2/pgbouncer",
            "--targets", "pgbouncer,pgbouncer-new,pgsluice", "--clients", clients]
args = B.parse_args()
bench = B.Bench(args)
targets = ["direct", "pgbouncer", "pgbouncer-new", "pgsluice"]
try:
    bench.start_warm(targets[1:])
    for rnd in range(2):
        for mode in modes:
            for t in targets:
                if mode == "prepared" and t == "pgbouncer":
                    continue
                a = nstat(); pa = pstat()
                r = bench.pgbench(t, mode, 5, "x")
                b = nstat(); pb = pstat()
                n = r["txns"] or 1
                cells = f"sysbusy={(pb['busy']-pa['busy'])/n:.1f} ctxt={(pb['ctxt']-pa['ctxt'])/n:.2f} " + " ".join(f"{k.replace('TcpExt','')}={(b[k]-a[k])/n:.2f}" for k in KEYS)
                print(f"{rnd} {mode:8} {t:14} txns={n} cpu={r.get('cpu_us') or 0:.2f} user={r.get('user_us') or 0:.2f} sys={r.get('sys_us') or 0:.2f} {cells}", flush=True)
finally:
    bench.cleanup()
