#!/usr/bin/env python3
"""Opens N client connections to a PostgreSQL server or pooler and keeps them idle.

    python3 integration/idle_clients.py --port P --count N [--user postgres]
        [--password PW] [--database app] [--concurrency 100] [--timeout 120]
        [--query "SELECT 1"]

Speaks the protocol itself, with nothing but asyncio: StartupMessage, then the password
(md5 or cleartext; SCRAM is not supported) and every message up to ReadyForQuery, then
one simple Query (--query, "SELECT 1" by default; "" for none) and its answer up to
ReadyForQuery, so that a pooler in transaction mode has served each client once. After
that a connection sends nothing; a task per connection waits on its socket only to notice
the other side closing it. At most --concurrency connections are opening at a time, so
the server's listen backlog is never overrun. Raises its own RLIMIT_NOFILE to fit N.

Talks to its parent on stdin/stdout, one JSON object per line:
  - once every connection is open or has failed, it prints
    {"connected": C, "failed": F, "seconds": S, "errors": {"message": count, ...}};
  - each line "status" on stdin is answered with {"open": O, "closed_by_peer": K};
  - end of stdin (or SIGTERM) sends Terminate on every open connection and exits.
bench_suite.py runs it to measure a pooler's memory per idle client.
"""

import argparse
import asyncio
import hashlib
import json
import resource
import signal
import struct
import sys
import time

PROTOCOL_3_0 = 196608
TERMINATE = b"X\x00\x00\x00\x04"


class LoginError(Exception):
    pass


def startup_message(user, database):
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", user), ("database", database),
                                   ("application_name", "idle_clients")))
    body = struct.pack("!i", PROTOCOL_3_0) + params + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def password_message(secret):
    body = secret.encode() + b"\0"
    return b"p" + struct.pack("!i", len(body) + 4) + body


def md5_secret(user, password, salt):
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def error_text(body):
    """The M (message) field of an ErrorResponse, with its SQLSTATE."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('C', '?')} {fields.get('M', '?')}"


async def read_message(reader):
    head = await reader.readexactly(5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    return kind, await reader.readexactly(length - 4)


def query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body


async def run_query(reader, writer, sql):
    """Sends one simple Query and reads its answer up to ReadyForQuery."""
    writer.write(query_message(sql))
    error = None
    while True:
        kind, body = await read_message(reader)
        if kind == b"E":
            error = error_text(body)
        elif kind == b"Z":
            if error:
                raise LoginError(f"query: {error}")
            return


async def login(port, user, password, database, query=""):
    """Opens one connection, reads up to ReadyForQuery and runs `query` (if any) once;
    returns (reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(startup_message(user, database))
        while True:
            kind, body = await read_message(reader)
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code == 5:
                    writer.write(password_message(md5_secret(user, password, body[4:8])))
                elif code == 3:
                    writer.write(password_message(password))
                elif code != 0:
                    raise LoginError(f"authentication method {code} not supported")
            elif kind == b"E":
                raise LoginError(error_text(body))
            elif kind == b"Z":
                if query:
                    await run_query(reader, writer, query)
                return reader, writer
            # S (ParameterStatus), K (BackendKeyData), N (notice): nothing to do.
    except BaseException:
        writer.close()
        raise


class Clients:
    def __init__(self, args):
        self.args = args
        self.open = set()  # writers of connections that reached ReadyForQuery
        self.closed_by_peer = 0
        self.failed = 0
        self.errors = {}

    async def one(self, gate):
        a = self.args
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    login(a.port, a.user, a.password, a.database, a.query), a.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                    LoginError) as e:
                self.failed += 1
                msg = str(e) or type(e).__name__
                self.errors[msg] = self.errors.get(msg, 0) + 1
                return
        self.open.add(writer)
        asyncio.get_running_loop().create_task(self.watch(reader, writer))

    async def watch(self, reader, writer):
        try:
            while await reader.read(4096):
                pass
        except OSError:
            pass
        if writer in self.open:
            self.open.discard(writer)
            self.closed_by_peer += 1

    async def hold(self):
        """Answers "status" lines until stdin closes."""
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while line := await stdin.readline():
            if line.strip() == b"status":
                say({"open": len(self.open), "closed_by_peer": self.closed_by_peer})

    def close_all(self):
        for w in self.open:
            try:
                w.write(TERMINATE)
                w.close()
            except OSError:
                pass
        self.open.clear()


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raise_fd_limit(n):
    want = n + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        except (ValueError, OSError) as e:
            sys.exit(f"idle_clients: need {want} file descriptors, limit is {soft}: {e}")


async def main(args):
    clients = Clients(args)
    gate = asyncio.Semaphore(args.concurrency)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    t0 = time.monotonic()
    await asyncio.gather(*(clients.one(gate) for _ in range(args.count)))
    say({"connected": len(clients.open), "failed": clients.failed,
         "seconds": round(time.monotonic() - t0, 2), "errors": clients.errors})
    holding = loop.create_task(clients.hold())
    stop = loop.create_task(done.wait())
    await asyncio.wait([holding, stop], return_when=asyncio.FIRST_COMPLETED)
    clients.close_all()
    await asyncio.sleep(0.1)  # let the Terminates go out


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    ap.add_argument("--count", type=int, required=True, help="connections to open")
    ap.add_argument("--user", default="postgres")
    ap.add_argument("--password", default="")
    ap.add_argument("--database", default="app")
    ap.add_argument("--concurrency", type=int, default=100,
                    help="connections opening at a time (default 100)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds one login (and its query) may take (default 120)")
    ap.add_argument("--query", default="SELECT 1",
                    help='simple query each client runs once after login ("" for none)')
    return ap.parse_args()


if __name__ == "__main__":
    args = parse_args()
    raise_fd_limit(args.count)
    asyncio.run(main(args))
