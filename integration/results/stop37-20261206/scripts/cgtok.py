import sys, collections
import os
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../stop36-20261206/scripts/cgdiff.py")).read().split("a = load")[0])
a = load(sys.argv[1]); b = load(sys.argv[2]); n = float(sys.argv[3])
g = collections.Counter()
for k in set(a) | set(b):
    v = (b[k] - a[k]) / n
    path, _, fn = k.partition(":")
    # group by the function (the caller the inlined code is charged to)
    f = fn.split(" [")[0]
    if "tokio::runtime::io" in f or "poll_evented" in path or "TcpStream as tokio" in f or "coop" in path and "Registration" in f: grp = "tokio I/O (registration, readiness, reactor)"
    elif "tokio::runtime::task" in f or "tokio::task::local" in f or "current_thread" in f or "LocalSet" in f: grp = "tokio tasks (poll, schedule, wake)"
    elif "malloc" in path or "free" in f: grp = "malloc/free"
    elif "oneshot" in path: grp = "oneshot"
    elif "floor_relay" in f: grp = "relay's own (" + f.split("::")[1] + ")"
    elif "libc" in k or path.startswith("./"): grp = "libc:" + path.split("/")[-1][:30]
    else: grp = f[:60]
    g[grp] += v
for k, v in g.most_common(30): print(f"{v:8.1f} {k}")
