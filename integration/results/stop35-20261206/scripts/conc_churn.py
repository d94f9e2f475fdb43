import os, re, subprocess, sys, time, statistics
sys.path.insert(0, "/work/main/integration")
import bench as B
new, old, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
mode_args = sys.argv[4:]  # e.g. -C
sys.argv = ["bench.py", "--no-build", "--binary", new, "--baseline-binary", old, "--targets", "pgsluice,pgsluice-baseline", "--modes", "simple"]
args = B.parse_args(); bench = B.Bench(args)
def start(t):
    cmd = ["pgbench", "-n", "-S", *mode_args, "-c", "25", "-j", "1", "-T", "6", "-h", "127.0.0.1", "-p", str(bench.ports[t]), "-U", B.USER, B.DATABASE]
    return subprocess.Popen(cmd, env=bench.pg_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    bench.start_cluster()
    for t in ("pgsluice", "pgsluice-baseline"):
        bench.start_pgsluice(t); bench.pgbench(t, "simple", 2, "warmup", connect="-C" in mode_args)
    ratios = []; rows = []
    for r in range(rounds):
        c0 = {t: B.cpu_split(bench.procs[t][1]) for t in ("pgsluice", "pgsluice-baseline")}
        ps = {t: start(t) for t in (("pgsluice", "pgsluice-baseline") if r % 2 == 0 else ("pgsluice-baseline", "pgsluice"))}
        outs = {t: p.communicate()[0] for t, p in ps.items()}
        c1 = {t: B.cpu_split(bench.procs[t][1]) for t in ps}
        res = {}
        for t in ps:
            n = int(re.search(r"actually processed: (\d+)", outs[t]).group(1))
            u = (c1[t][0] - c0[t][0]) * 1e6 / n; s = (c1[t][1] - c0[t][1]) * 1e6 / n
            res[t] = (n, u, s)
        ratio = (res["pgsluice"][1] + res["pgsluice"][2]) / (res["pgsluice-baseline"][1] + res["pgsluice-baseline"][2])
        ratios.append(ratio)
        print(f"round {r+1}: new n={res['pgsluice'][0]} user {res['pgsluice'][1]:.1f} sys {res['pgsluice'][2]:.1f} | old n={res['pgsluice-baseline'][0]} user {res['pgsluice-baseline'][1]:.1f} sys {res['pgsluice-baseline'][2]:.1f} | cpu ratio {ratio:.3f}", flush=True)
    print("median cpu ratio new/old", round(statistics.median(ratios), 3), "rounds below 1:", sum(x < 1 for x in ratios), "of", len(ratios))
finally:
    bench.cleanup()
