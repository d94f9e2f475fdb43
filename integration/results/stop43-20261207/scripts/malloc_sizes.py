import os, subprocess, sys, time, signal, re, collections
sys.path.insert(0, "/work/main/integration")
import bench as B
binary = sys.argv[1]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgsluice", "--clients", "10"]
args = B.parse_args()
bench = B.Bench(args)
try:
    bench.start_warm(["pgsluice"])
    pid = bench.procs["pgsluice"][1]
    data = "/tmp/adhoc/s43/malloc.data"
    st = subprocess.Popen(["perf", "record", "-e", "probe_libc:malloc", "-e", "probe_libc:pm", "-p", str(pid), "-o", data], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    time.sleep(1)
    x = bench.pgbench("pgsluice", "simple", 2, "x", connect=True)
    time.sleep(0.3)
    st.send_signal(signal.SIGINT); st.wait()
    print("txns", x["txns"], flush=True)
    out = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
    c = collections.Counter()
    for l in out.splitlines():
        m = re.search(r"(malloc|pm):.*?bytes=(\d+)", l)
        if m: c[(m.group(1), int(m.group(2)))] += 1
    n = x["txns"]
    tot = sum(c.values())
    print("allocs per connection", tot / n)
    for (k, sz), v in sorted(c.items(), key=lambda kv: -kv[1])[:40]:
        print(f"{k:6s} {sz:7d} {v/n:6.2f}")
finally:
    bench.cleanup()
