"""bench_suite.py's memory sections: idle clients' memory, and whether it grows with idle time.

idle  for each pooler, a fresh process: its memory (VmRSS of /proc/PID/status, Pss of
      smaps_rollup) with no client, then with N clients that logged in and ran one query
      (idle_clients.py), once VmRSS is stable, then after they left.
age   for each pooler, a fresh process with N clients that logged in, ran one query and
      went idle (all poolers' clients held at once), its memory right after they went idle
      ("young", once VmRSS is stable), then again after --age-wait seconds of silence
      ("old"), with the CPU time the pooler used meanwhile. Growth per client per hour is
      a linear extrapolation of what the wait showed.
"""

import json
import os
import select
import shlex
import subprocess
import sys
import time

import bench
from bench import Failure, log

IDLE_CLIENTS = os.path.join(bench.ROOT, "integration", "idle_clients.py")


def memory(pid):
    """VmRSS (status) and Pss (smaps_rollup, None if unreadable) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        rss = int(next(l for l in f if l.startswith("VmRSS:")).split()[1])
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            pss = int(next(l for l in f if l.startswith("Pss:")).split()[1])
    except (OSError, StopIteration):
        pass
    return {"rss_kib": rss, "pss_kib": pss}


def stable_memory(pid, settle=2.0, timeout=30.0):
    """Samples VmRSS every 0.25 s until it moved by at most 64 KiB over `settle` seconds
    (or `timeout` passed); returns the last reading and the seconds waited."""
    t0 = time.monotonic()
    window = []
    while True:
        m = memory(pid)
        now = time.monotonic()
        window = [(t, v) for t, v in window if now - t <= settle] + [(now, m["rss_kib"])]
        vals = [v for _, v in window]
        if now - t0 >= settle and max(vals) - min(vals) <= 64:
            break
        if now - t0 >= timeout:
            m["unstable"] = True
            break
        time.sleep(0.25)
    m["waited_s"] = round(time.monotonic() - t0, 1)
    return m


def read_json_line(proc, timeout):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise Failure(f"idle_clients.py said nothing within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        raise Failure(f"idle_clients.py exited (status {proc.wait()})")
    return json.loads(line)


def fd_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        return next(l.split()[3] for l in f if l.startswith("Max open files"))


class IdleClients:
    """An idle_clients.py child holding `count` connections to `port` (each ran one query)."""

    def __init__(self, port, count, concurrency, raw):
        self.cmd = [sys.executable, IDLE_CLIENTS, "--port", str(port), "--count", str(count),
                    "--user", bench.USER, "--password", bench.PASSWORD,
                    "--database", bench.DATABASE, "--concurrency", str(concurrency),
                    "--query", "SELECT 1"]
        self.raw = raw
        self.count = count
        with open(raw + ".stderr", "w") as err:
            self.child = subprocess.Popen(self.cmd, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err, text=True)

    def connected(self):
        """{"connected", "failed", "seconds", "errors"} once every login is done."""
        return read_json_line(self.child, 60 + self.count / 20)

    def status(self):
        self.child.stdin.write("status\n")
        self.child.stdin.flush()
        return read_json_line(self.child, 30)

    def close(self):
        try:
            self.child.stdin.close()
        except OSError:
            pass
        try:
            self.child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        if os.path.exists(self.raw + ".stderr") and os.path.getsize(self.raw + ".stderr") == 0:
            os.remove(self.raw + ".stderr")

    def write(self, r):
        with open(self.raw, "w") as f:
            f.write("$ " + shlex.join(self.cmd) + "\n" + json.dumps(r, indent=2) + "\n")


def idle_memory(suite, target):
    """The idle section for one pooler; appends its readings to suite.data["idle"]."""
    args = suite.args
    pid = suite.fresh_pooler(target)
    r = {"target": target, "requested": args.idle_clients, "pid": pid,
         "fd_limit": fd_limit(pid), "empty": stable_memory(pid), "query": "SELECT 1"}
    log(f"idle: {target} (pid {pid}) empty: {r['empty']}; opening {args.idle_clients} "
        f"clients")
    clients = IdleClients(suite.b.ports[target], args.idle_clients, args.idle_concurrency,
                          os.path.join(suite.results_dir, f"idle-{target}.txt"))
    try:
        r.update(clients.connected())
        r["with_clients"] = stable_memory(pid)
        r["at_reading"] = clients.status()
    finally:
        clients.close()
    time.sleep(1)
    r["after"] = stable_memory(pid)
    clients.write(r)
    log(f"idle: {target}: {r['connected']} connected ({r['failed']} failed) in "
        f"{r['seconds']}s; with clients {r['with_clients']}; after {r['after']}")
    suite.data["idle"].append(r)


def idle(suite):
    for t in bench_poolers(suite):
        try:
            idle_memory(suite, t)
        except (Failure, OSError, ValueError) as e:
            note(suite, f"Idle memory of {bench.TARGET_NAMES[t]} not measured: "
                        f"{bench.oneline(str(e))}")


def age(suite):
    """The age section: every pooler's clients held at once through one --age-wait."""
    args = suite.args
    held = []  # (target, pid, IdleClients, readings)
    try:
        for t in bench_poolers(suite):
            try:
                pid = suite.fresh_pooler(t)
                r = {"target": t, "requested": args.age_clients, "pid": pid,
                     "empty": stable_memory(pid)}
                log(f"age: {t} (pid {pid}): opening {args.age_clients} clients")
                c = IdleClients(suite.b.ports[t], args.age_clients, args.idle_concurrency,
                                os.path.join(suite.results_dir, f"age-{t}.txt"))
                held.append((t, pid, c, r))
                r.update(c.connected())
                r["young"] = stable_memory(pid)
                r["young_at"] = time.monotonic()
                r["cpu_young_s"] = bench.cpu_seconds(pid)
                log(f"age: {t}: {r['connected']} idle, right after: {r['young']}")
            except (Failure, OSError, ValueError) as e:
                note(suite, f"Idle-age memory of {bench.TARGET_NAMES[t]} not measured: "
                            f"{bench.oneline(str(e))}")
        end = time.monotonic() + args.age_wait
        while time.monotonic() < end:
            log(f"age: waiting, {end - time.monotonic():.0f} s left")
            time.sleep(min(60, max(0, end - time.monotonic())))
        for t, pid, c, r in held:
            if "young" not in r:
                continue
            try:
                r["old"] = stable_memory(pid)
                r["idle_s"] = round(time.monotonic() - r.pop("young_at"), 1)
                r["cpu_idle_s"] = round(bench.cpu_seconds(pid) - r.pop("cpu_young_s"), 3)
                r["at_reading"] = c.status()
                log(f"age: {t}: after {r['idle_s']} s idle: {r['old']}, CPU "
                    f"{r['cpu_idle_s']} s, {r['at_reading']}")
                suite.data["age"].append(r)
            except (Failure, OSError, ValueError) as e:
                note(suite, f"Idle-age memory of {bench.TARGET_NAMES[t]} not measured: "
                            f"{bench.oneline(str(e))}")
    finally:
        for t, pid, c, r in held:
            c.close()
            c.write(r)


def bench_poolers(suite):
    return [t for t in suite.poolers() if t in suite.live()]


def note(suite, text):
    suite.b.notes.append(text)
    log(text)
