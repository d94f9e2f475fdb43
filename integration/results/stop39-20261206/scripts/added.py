import re, sys, glob, statistics, os
d = sys.argv[1]
vals = {}
for f in glob.glob(f"{d}/r*-*.txt"):
    m = re.match(r"r(\d+)-(\w+)-(.+)\.txt", os.path.basename(f))
    txt = open(f).read()
    p = re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", txt)
    if p: vals[(int(m[1]), m[2], m[3])] = (float(p[1])*1000, float(p[2])*1000)
for mode in ("simple", "extended"):
    for t in sorted({k[2] for k in vals} - {"direct"}):
        for i, k in enumerate(("p50", "p99")):
            diffs = [vals[(r, mode, t)][i] - vals[(r, mode, "direct")][i] for r in range(1, 20) if (r, mode, t) in vals and (r, mode, "direct") in vals]
            print(f"{mode:8s} {t:20s} {k} added median {statistics.median(diffs):5.1f}  rounds {[round(x) for x in diffs]}")
