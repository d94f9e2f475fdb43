#!/usr/bin/env python3
"""Readers with server-side prepared statements (psycopg 3, prepare_threshold=0), for the
extended-protocol retry test: each thread reads in a loop for SECONDS and counts what
failed.

Usage: prepared_readers.py URL SECONDS [THREADS]

Every thread has its own connection in autocommit. psycopg prepares each query as a
named protocol-level statement on first use and from then on only Binds and Executes
it, so a read that a replica loses must be replayed on another node with its statement
prepared there. Two queries alternate: one with a parameter, one returning rows.

Prints `prepared_readers: reads=N failures=M ports=...` and the first failures; exits 0
only when nothing failed. Exit 2: usage, or psycopg is not importable.
"""

import collections
import sys
import threading
import time

try:
    import psycopg
except ImportError as e:  # the Rust test turns this into a failure, not a skip
    print(f"prepared_readers: psycopg 3 is not importable ({e})", file=sys.stderr)
    sys.exit(2)


def reader(url, until, out, lock):
    reads, failures, ports = 0, [], collections.Counter()
    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
    i = 0
    while time.monotonic() < until:
        i += 1
        try:
            if i % 2:
                row = conn.execute(
                    "SELECT inet_server_port(), %s::int + 1", (i,)
                ).fetchone()
                if row[1] != i + 1:
                    raise AssertionError(f"wrong answer {row!r} for {i}")
            else:
                rows = conn.execute(
                    "SELECT inet_server_port(), g FROM generate_series(1, %s) g", (3,)
                ).fetchall()
                if [r[1] for r in rows] != [1, 2, 3]:
                    raise AssertionError(f"wrong rows {rows!r}")
                row = rows[0]
            reads += 1
            ports[row[0]] += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            failures.append(f"{time.monotonic():.3f} {type(e).__name__}: {e}")
            while conn.closed and time.monotonic() < until:
                try:
                    conn = psycopg.connect(url, autocommit=True, prepare_threshold=0)
                except Exception as e:  # noqa: BLE001
                    failures.append(f"reconnect: {type(e).__name__}: {e}")
                    time.sleep(0.1)
        time.sleep(0.003)
    conn.close()
    with lock:
        out["reads"] += reads
        out["failures"].extend(failures)
        out["ports"].update(ports)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url, seconds = sys.argv[1], float(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    until = time.monotonic() + seconds
    out = {"reads": 0, "failures": [], "ports": collections.Counter()}
    lock = threading.Lock()
    ts = [
        threading.Thread(target=reader, args=(url, until, out, lock))
        for _ in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ports = ",".join(f"{p}:{n}" for p, n in sorted(out["ports"].items()))
    print(
        f"prepared_readers: reads={out['reads']} failures={len(out['failures'])} "
        f"ports={ports}"
    )
    for f in out["failures"][:20]:
        print(f"  {f}")
    sys.exit(0 if not out["failures"] else 1)


if __name__ == "__main__":
    main()
