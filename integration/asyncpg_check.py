#!/usr/bin/env python3
"""asyncpg with its statement cache on, through pgsluice.

Usage: asyncpg_check.py URL [CONNECTIONS] [ROUNDS]

asyncpg prepares every query as a named protocol-level statement
(__asyncpg_stmt_<n>__, counted per connection, so the same names stand for
different queries on different connections) and keeps it in a per-connection
cache: from the second use on it only Binds and Executes. Each connection also
holds one explicit PreparedStatement (conn.prepare) for the whole run. Half
the connections run every round in an explicit transaction, half in autocommit.
The workload is checked value by value: scalar queries, multi-row results, an
error from a prepared statement (division by zero) with the connection used
afterwards, and writes: executemany (pipelined) in a transaction read back
inside and after it, and a rolled-back insert that must leave no row.

asyncpg infers parameter types from the server's Describe, so one text has one
set of parameter types here; the JDBC check covers one text bound with
different types.

Exits 0 only if every result matched; prints a summary line either way.
Exit 1: a mismatch, an error or the time bound (50 s); 2: usage, or asyncpg
is not importable.
"""

import asyncio
import random
import sys
import traceback

try:
    import asyncpg
except ImportError as e:  # the Rust test turns this into a failure, not a skip
    print(
        f"asyncpg_check: asyncpg is not importable ({e}); "
        "install it with: python3 -m pip install asyncpg",
        file=sys.stderr,
    )
    sys.exit(2)

TABLE = "asyncpg_check_t"
DEADLINE_SECS = 50


class Tally:
    def __init__(self):
        self.checked = 0
        self.failures = []

    def expect(self, what, got, want):
        if got != want:
            self.failures.append(f"{what}: got {got!r}, want {want!r}")
        else:
            self.checked += 1


async def run_one(conn, where, kind, rng, tally):
    if kind == "mul":
        x = rng.randint(-100000, 100000)
        tally.expect(where, await conn.fetchval("SELECT $1::int * 2", x), x * 2)
    elif kind == "cat":
        s = f"{where}-{rng.randint(0, 10**6)}"
        tally.expect(where, await conn.fetchval("SELECT $1::text || 'x'", s), s + "x")
    elif kind == "series":
        n = rng.randint(0, 500)
        row = await conn.fetchrow(
            "SELECT count(*), coalesce(sum(g), 0) FROM generate_series(1, $1) g", n
        )
        tally.expect(where, tuple(row), (n, n * (n + 1) // 2))
    elif kind == "rows":
        n = rng.randint(1, 20)
        rows = await conn.fetch(
            "SELECT g, 'r' || g FROM generate_series(1, $1::int) g ORDER BY g", n
        )
        tally.expect(where, [tuple(r) for r in rows], [(g, f"r{g}") for g in range(1, n + 1)])
    elif kind == "two":
        a, b = rng.randint(0, 1000), rng.randint(0, 1000)
        row = await conn.fetchrow("SELECT $1::int8 + $2::int8, $3::text", a, b, where)
        tally.expect(where, tuple(row), (a + b, where))


async def division(conn, where, rng, tally):
    """A prepared statement that fails (22012), then the same one succeeding."""
    try:
        got = await conn.fetchval("SELECT 1000 / $1::int", 0)
        tally.failures.append(f"{where}: 1000 / 0 returned {got!r}, want division_by_zero")
    except asyncpg.exceptions.DivisionByZeroError:
        tally.checked += 1
    d = rng.randint(1, 100)
    got = await conn.fetchval("SELECT 1000 / $1::int", d)
    tally.expect(f"{where} after the error", got, 1000 // d)


async def writes(conn, cid, tally):
    """30 rows by executemany in a transaction, then an insert rolled back."""
    insert = f"INSERT INTO {TABLE} (cid, i, v) VALUES ($1, $2, $3)"

    async def count(what, want):
        got = await conn.fetchrow(
            f"SELECT count(*), coalesce(sum(i), 0) FROM {TABLE} WHERE cid = $1", cid
        )
        tally.expect(f"conn {cid} {what}", tuple(got), want)

    async with conn.transaction():
        await conn.executemany(insert, [(cid, i, f"v{cid}-{i}") for i in range(30)])
        await count("writes (in transaction)", (30, 435))
    await count("writes (after commit)", (30, 435))
    tx = conn.transaction()
    await tx.start()
    await conn.execute(insert, cid, 99, "gone")
    await count("insert (before rollback)", (31, 534))
    await tx.rollback()
    await count("insert (after rollback)", (30, 435))
    v = await conn.fetchval(f"SELECT v FROM {TABLE} WHERE cid = $1 AND i = $2", cid, 17)
    tally.expect(f"conn {cid} row 17", v, f"v{cid}-17")


async def connection(url, cid, rounds, tally):
    rng = random.Random(2000 + cid)
    in_transactions = cid % 2 == 1
    conn = await asyncpg.connect(url, timeout=10, command_timeout=30)
    try:
        add = await conn.prepare("SELECT $1::int + $2::int")
        # Per-connection order of first use, so __asyncpg_stmt_<n>__ stands for
        # different queries on different connections.
        kinds = ["mul", "cat", "series", "rows", "two"]
        rng.shuffle(kinds)
        for r in range(rounds):
            where = f"conn {cid} round {r}"
            tx = conn.transaction() if in_transactions else None
            if tx:
                await tx.start()
            for kind in kinds if r == 0 else rng.sample(kinds, len(kinds)):
                await run_one(conn, f"{where} {kind}", kind, rng, tally)
            a, b = rng.randint(0, 1000), rng.randint(0, 1000)
            tally.expect(f"{where} explicit statement", await add.fetchval(a, b), a + b)
            if tx:
                await tx.commit()
            if r % 10 == 5:
                await division(conn, f"{where} division", rng, tally)
        await writes(conn, cid, tally)
        cached = len(conn._stmt_cache) if hasattr(conn, "_stmt_cache") else -1
        if cached == 0:
            tally.failures.append(f"conn {cid}: asyncpg cached no statement (cache off?)")
        if not add.get_name():
            tally.failures.append(f"conn {cid}: conn.prepare gave an unnamed statement")
    finally:
        await conn.close(timeout=10)


async def guarded(url, cid, rounds, tally):
    try:
        await connection(url, cid, rounds, tally)
    except Exception as e:
        tally.failures.append(f"conn {cid}: {type(e).__name__}: {e}\n{traceback.format_exc()}")


async def run(url, conns, rounds, tally):
    setup = await asyncpg.connect(url, timeout=10, command_timeout=30)
    try:
        await setup.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await setup.execute(f"CREATE TABLE {TABLE} (cid int, i int, v text)")
    finally:
        await setup.close(timeout=10)
    await asyncio.gather(*(guarded(url, c, rounds, tally) for c in range(conns)))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 40

    tally = Tally()
    try:
        asyncio.run(asyncio.wait_for(run(url, conns, rounds, tally), DEADLINE_SECS))
    except asyncio.TimeoutError:
        tally.failures.append(f"not done after {DEADLINE_SECS} s")
    except Exception as e:
        tally.failures.append(f"setup: {type(e).__name__}: {e}")

    status = "OK" if not tally.failures else "FAILED"
    print(
        f"asyncpg_check {status}: asyncpg {asyncpg.__version__}, {conns} connections x "
        f"{rounds} rounds, statement cache on: {tally.checked} results checked, "
        f"{len(tally.failures)} failures"
    )
    for msg in tally.failures[:20]:
        print("  " + msg)
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
