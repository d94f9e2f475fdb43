"""Connections per second and pooler CPU per connection of a fresh pooler process, then of the same
process after 900 clients ran pgbench -S for 5 s (does a process that served many clients pay more
per new connection?). Usage: ROUNDS=4 python3 aged.py pgsluice:BIN pgbouncer:BIN
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
PID = None


def cpu(pid):
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / 100.0
def churn(port, secs=6):
    t = cpu(PID)
    p = subprocess.run(["pgbench", "-n", "-S", "-C", "-c", "50", "-j", "2", "-T", str(secs), "-U", "postgres", "-h", "127.0.0.1", "-p", str(port), "app"], env=ENV, text=True, capture_output=True)
    n = int(re.search(r"processed: (\d+)", p.stdout).group(1))
    return n / secs, (cpu(PID) - t) * 1e6 / n
def many(port, c):
    subprocess.run(["pgbench", "-n", "-S", "-c", str(c), "-j", "2", "-T", "5", "-U", "postgres", "-h", "127.0.0.1", "-p", str(port), "app"], env=ENV, text=True, capture_output=True)
work = tempfile.mkdtemp(prefix="aged."); os.chmod(work, 0o755)
cluster = os.path.join(work, "cluster")
try:
    p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
    primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
    subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=ENV, check=True, capture_output=True)
    for r in range(int(os.environ.get("ROUNDS", "2"))):
        for spec in sys.argv[1:]:
            kind, binary = spec.split(":", 1)
            proc, port, stop = start(kind, binary, work, primary)
            globals()['PID'] = proc.pid
            churn(port, 2)
            a = churn(port)
            many(port, 900)
            b = churn(port)
            proc.send_signal(stop); proc.wait(timeout=60)
            print(f"r{r} {kind:9} fresh {a[0]:7.0f}/s {a[1]:6.1f} us/conn   after 900 clients {b[0]:7.0f}/s {b[1]:6.1f} us/conn", flush=True)
finally:
    subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
