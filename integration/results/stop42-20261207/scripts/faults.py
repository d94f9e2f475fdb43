"""Page faults, CPU and connections per second of each pooler under `pgbench -n -S -C -c 50 -j 2 -T 6`
(a new connection per transaction), read from /proc/PID/stat (minflt, majflt, utime, stime) and
the threads' context switches (/proc/PID/task/*/status) around the run. Does the allocator returning and re-touching memory cost pgsluice kernel time per connection?
Usage: ROUNDS=3 python3 faults.py pgsluice:BIN pgbouncer:BIN ...
Reuses the start/config helpers of stop40-20261206/scripts/conn_tools.py."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

_spec = importlib.util.spec_from_file_location(
    "conn_tools", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "../../stop40-20261206/scripts/conn_tools.py"))
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)
I, ENV, start = T.I, T.ENV, T.start


def stat(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    # after the name: state(0) ppid ... minflt(7) cminflt majflt(9) cmajflt utime(11) stime(12)
    return int(f[7]), int(f[9]), int(f[11]), int(f[12])


def switches(pid):
    """Voluntary and involuntary context switches, summed over the process's threads."""
    vol = invol = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        for line in open(f"/proc/{pid}/task/{t}/status"):
            if line.startswith("voluntary_ctxt_switches"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                invol += int(line.split()[1])
    return vol, invol


def churn(pid, port, secs):
    a = stat(pid) + switches(pid)
    p = subprocess.run(["pgbench", "-n", "-S", "-C", "-c", "50", "-j", "2", "-T", str(secs), "-U", "postgres",
                        "-h", "127.0.0.1", "-p", str(port), "app"], env=ENV, text=True, capture_output=True)
    b = stat(pid) + switches(pid)
    n = int(re.search(r"processed: (\d+)", p.stdout).group(1))
    return n, [(y - x) for x, y in zip(a, b)]


work = tempfile.mkdtemp(prefix="faults.")
os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True,
                       capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"],
                   env=ENV, check=True, capture_output=True)
    print("| round | pooler | connections/s | minor faults per connection | major | user µs/conn | system µs/conn |"
          " voluntary switches per connection | involuntary |")
    print("|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in range(int(os.environ.get("ROUNDS", "3"))):
        for spec in sys.argv[1:]:
            kind, binary = spec.split(":", 1)
            proc, port, stop = start(kind, binary, work, primary)
            churn(proc.pid, port, 2)
            n, (minflt, majflt, ut, st, vol, invol) = churn(proc.pid, port, 6)
            proc.send_signal(stop)
            proc.wait(timeout=60)
            name = f"{kind} {binary}"
            print(f"| {r + 1} | {name} | {n / 6:,.0f} | {minflt / n:.2f} | {majflt / n:.3f} | "
                  f"{ut * 1e4 / n:.1f} | {st * 1e4 / n:.1f} | {vol / n:.2f} | {invol / n:.2f} |", flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
