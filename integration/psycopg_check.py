#!/usr/bin/env python3
"""psycopg 3 with server-side prepared statements through pgsluice.

Usage: psycopg_check.py URL [THREADS] [ROUNDS]

Every connection uses prepare_threshold=0, so psycopg prepares each query as
a named protocol-level statement (_pg3_0, _pg3_1, ... per connection: the
same names on every connection, for different queries, in a different order
on each) on first use and then only Binds/Executes it. Each thread has its
own connection (half in autocommit, half with explicit transactions) and runs
a mixed, checked workload: scalar queries, multi-row results, executemany
(pipelined), an explicit pipeline, and a transaction with an INSERT read back.

Exits 0 only if every result matched; prints a summary line either way.
Exit 1: a mismatch or an error; 2: usage, or psycopg is not importable.
"""

import random
import sys
import threading
import traceback

try:
    import psycopg
except ImportError as e:  # the Rust test turns this into a failure, not a skip
    print(
        f"psycopg_check: psycopg 3 is not importable ({e}); "
        "install it with: python3 -m pip install 'psycopg[binary]'",
        file=sys.stderr,
    )
    sys.exit(2)

TABLE = "psycopg_check_t"


class Failures:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []
        self.checked = 0

    def ok(self, n=1):
        with self.lock:
            self.checked += n

    def fail(self, msg):
        with self.lock:
            self.items.append(msg)


def expect(fails, what, got, want):
    if got != want:
        fails.fail(f"{what}: got {got!r}, want {want!r}")
    else:
        fails.ok()


def worker(url, tid, rounds, fails):
    rng = random.Random(1000 + tid)
    autocommit = tid % 2 == 0
    try:
        conn = psycopg.connect(url, prepare_threshold=0, autocommit=autocommit, connect_timeout=10)
    except Exception as e:
        fails.fail(f"thread {tid}: connect: {e}")
        return
    try:
        with conn:
            # Per-thread order of first use, so _pg3_<n> names map to different
            # queries on different connections.
            kinds = ["mul", "cat", "series", "rows", "two"]
            rng.shuffle(kinds)
            for r in range(rounds):
                for kind in kinds if r == 0 else rng.sample(kinds, len(kinds)):
                    run_one(conn, tid, r, kind, rng, fails)
                if not autocommit:
                    conn.commit()
                if r % 10 == 5:
                    pipelined(conn, tid, r, rng, fails)
                    if not autocommit:
                        conn.commit()
            inserts(conn, tid, rng, fails)
            names = prepared_names(conn)
            if not names:
                fails.fail(f"thread {tid}: psycopg prepared nothing (prepare_threshold ignored?)")
    except Exception as e:
        fails.fail(f"thread {tid}: {type(e).__name__}: {e}\n{traceback.format_exc()}")


def prepared_names(conn):
    """The statement names psycopg believes it has prepared on this connection."""
    try:
        return list(conn._prepared._names.values())
    except Exception:
        return ["?"]  # internals changed: don't fail on that


def run_one(conn, tid, r, kind, rng, fails):
    where = f"thread {tid} round {r} {kind}"
    cur = conn.cursor()
    if kind == "mul":
        x = rng.randint(-100000, 100000)
        cur.execute("SELECT %s::int * 2", (x,))
        expect(fails, where, cur.fetchone()[0], x * 2)
    elif kind == "cat":
        s = f"t{tid}-{rng.randint(0, 10**6)}"
        cur.execute("SELECT %s::text || 'x'", (s,))
        expect(fails, where, cur.fetchone()[0], s + "x")
    elif kind == "series":
        n = rng.randint(0, 500)
        cur.execute("SELECT count(*), coalesce(sum(g), 0) FROM generate_series(1, %s) g", (n,))
        expect(fails, where, cur.fetchone(), (n, n * (n + 1) // 2))
    elif kind == "rows":
        n = rng.randint(1, 20)
        cur.execute("SELECT g, 'r' || g FROM generate_series(1, %s::int) g ORDER BY g", (n,))
        expect(fails, where, cur.fetchall(), [(g, f"r{g}") for g in range(1, n + 1)])
    elif kind == "two":
        a, b = rng.randint(0, 1000), rng.randint(0, 1000)
        cur.execute("SELECT %s::int8 + %s::int8, %s::text", (a, b, str(tid)))
        expect(fails, where, cur.fetchone(), (a + b, str(tid)))


def pipelined(conn, tid, r, rng, fails):
    """Several prepared executions in one pipeline (Parse/Bind/Execute..., Sync)."""
    xs = [rng.randint(0, 10**6) for _ in range(5)]
    with conn.pipeline():
        curs = []
        for x in xs:
            c = conn.cursor()
            c.execute("SELECT %s::int * 2", (x,))
            curs.append(c)
        c2 = conn.cursor()
        c2.execute("SELECT %s::int8 + %s::int8, %s::text", (xs[0], 1, "p"))
    for x, c in zip(xs, curs):
        expect(fails, f"thread {tid} round {r} pipeline", c.fetchone()[0], x * 2)
    expect(fails, f"thread {tid} round {r} pipeline two", c2.fetchone(), (xs[0] + 1, "p"))


def inserts(conn, tid, rng, fails):
    rows = [(tid, i, f"v{tid}-{i}") for i in range(30)]
    with conn.transaction():
        cur = conn.cursor()
        cur.executemany(f"INSERT INTO {TABLE} (tid, i, v) VALUES (%s, %s, %s)", rows)
        cur.execute(f"SELECT count(*), sum(i) FROM {TABLE} WHERE tid = %s", (tid,))
        expect(fails, f"thread {tid} inserts (in transaction)", cur.fetchone(), (30, sum(range(30))))
    cur = conn.cursor()
    cur.execute(f"SELECT count(*), sum(i) FROM {TABLE} WHERE tid = %s", (tid,))
    expect(fails, f"thread {tid} inserts (after commit)", cur.fetchone(), (30, sum(range(30))))
    i = rng.randrange(30)
    cur.execute(f"SELECT v FROM {TABLE} WHERE tid = %s AND i = %s", (tid, i))
    expect(fails, f"thread {tid} insert row {i}", cur.fetchone(), (f"v{tid}-{i}",))
    if not conn.autocommit:
        conn.commit()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 40

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (tid int, i int, v text)")

    fails = Failures()
    ts = [threading.Thread(target=worker, args=(url, t, rounds, fails)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()

    status = "OK" if not fails.items else "FAILED"
    print(
        f"psycopg_check {status}: psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, "
        f"libpq {psycopg.pq.version()}), {threads} threads x {rounds} rounds, prepare_threshold=0: "
        f"{fails.checked} results checked, {len(fails.items)} failures"
    )
    for msg in fails.items[:20]:
        print("  " + msg)
    sys.exit(1 if fails.items else 0)


if __name__ == "__main__":
    main()
