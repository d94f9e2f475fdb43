import re, sys, collections
sys.argv += []
exec(open("cgdiff.py").read().split("a = load")[0])
a = load(sys.argv[1]); b = load(sys.argv[2]); n = float(sys.argv[3])
g = collections.Counter()
for k in set(a) | set(b):
    v = (b[k] - a[k]) / n
    path, _, fn = k.partition(":")
    if "tokio" in path: grp = "tokio"
    elif "/time" in path or "Timespec" in fn or "clock" in fn: grp = "time"
    elif "libc" in k or path.startswith("./"): grp = "libc:" + path.split("/")[-1][:30]
    elif "/work/main/src/" in path: grp = "src:" + path.split("/work/main/src/")[1]
    elif "rustc" in path: grp = "std-inlined:" + fn.split("::")[1] if "::" in fn else "std"
    else: grp = path.split("/")[-3] if path.count("/") > 3 else path
    g[grp] += v
for k, v in g.most_common(45): print(f"{v:8.1f} {k}")
