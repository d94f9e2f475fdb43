#!/usr/bin/env python3
"""pgsluice benchmark: pgbench -S through PgBouncer and pgsluice, against a direct connection.

    python3 integration/bench.py [--quick] [--duration S] [--rounds N] [--clients N]
                                 [--pool-size N] [--modes simple,extended,prepared]
                                 [--targets direct,pgbouncer,pgsluice,pgsluice-nometrics,
                                            pgsluice-session]
                                 [--no-build] [--baseline-binary PATH]
                                 [--pgbouncer-new PATH] [--connect]

Builds pgsluice (cargo build --release, unless --no-build), starts a throwaway
PostgreSQL cluster (integration/cluster.sh), initialises it with `pgbench -i -s 10`
(database app, user postgres), then starts PgBouncer (/usr/sbin/pgbouncer) and pgsluice
in transaction mode with the same pool size and the same client auth (md5, user
postgres; the server trusts postgres). Every round runs every workload
(`pgbench -n -S -M MODE -c CLIENTS -j 2 -T DURATION`) on every target, interleaved, with
the target order rotated from round to round.

With --pgbouncer-new PATH, target `pgbouncer-new` runs that PgBouncer binary (a newer
release built from source) with the same configuration as PgBouncer 1.18, in every mode,
plus `max_prepared_statements = 200` (its default from 1.24 on; 1.18 refuses the key, so
it is only written for a PgBouncer of 1.21 or later, which supports prepared statements in
transaction mode).

With --baseline-binary PATH, target `pgsluice-baseline` runs that binary (another commit's
build) with the plain transaction-mode config, in every mode, to compare commits in one run.

Modes simple and extended run on direct, PgBouncer and pgsluice by default; mode simple
also on `pgsluice-nometrics`, a second pgsluice with the same config but `[metrics] enabled
= false` and `slow_query_threshold = 0` (the `pgsluice` target runs with the defaults:
metrics on, slow query log at 0.1 s), so the table shows what the statistics cost in CPU
per transaction (footnote ⁴: the median over rounds of the paired on/off ratio); mode prepared
(`pgbench -M prepared`, a named statement prepared once per client connection) also runs
on `pgsluice-session`, a second pgsluice with the same config but `pool_mode = "session"`
and a pool as large as --clients (so no client waits for a server). PgBouncer 1.18 has
no prepared-statement support in transaction mode: it is run anyway and what pgbench
reports (aborted clients, errors) goes into the table. An explicit --targets applies to
every mode.

For each prepared-mode run through pgsluice (transaction mode) a fresh pgsluice process is
started (and warmed up with --warmup seconds of `-M simple`, which sends no named Parse),
then stopped with SIGTERM after the run; the line it logs at exit gives the Parse messages
it sent to servers (`server_parses`), the client Parse messages it answered itself
(`local_parses`) and the distinct statements, for that run alone.

Per run: TPS (without initial connection time), average latency, p50/p99 latency (from
pgbench's per-transaction log, deleted once summarised), failed transactions, and the
pooler's CPU time (utime+stime of /proc/PID/stat, all threads) over the run divided by
the transactions pgbench processed.

With --connect, pgbench runs with -C (a new connection, login included, per transaction):
TPS is then connections per second and CPU per transaction is CPU per connection.

With --tls, every hop is TLS: the script makes a CA and a server certificate with the
openssl command line, turns on `ssl` in PostgreSQL with it, and runs PgBouncer
(client_tls_sslmode = require, server_tls_sslmode = require) and pgsluice ([tls]
client_mode = "require", server_tls = "require") with the same certificate; pgbench and
psql connect with sslmode=require (direct too). TLS 1.3 with the servers' default cipher.

Prints a Markdown table (medians over rounds) and writes it, with every run's raw pgbench
output, to integration/results/<UTC timestamp>/.
"""

import argparse
import datetime
import hashlib
import math
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_SH = os.path.join(ROOT, "integration", "cluster.sh")
PGBOUNCER = "/usr/sbin/pgbouncer"
PORT_RESERVATIONS = "/tmp/pgsluice-ports"  # shared with cluster.sh
USER = "postgres"
PASSWORD = "bench_pw"  # client-side password for both poolers; the server trusts postgres
DATABASE = "app"
TARGET_NAMES = {"direct": "direct", "pgbouncer": "PgBouncer", "pgbouncer-new": "PgBouncer (new)",
                "pgsluice": "pgsluice",
                "pgsluice-nometrics": "pgsluice (metrics off)",
                "pgsluice-baseline": "pgsluice (baseline binary)",
                "pgsluice-session": "pgsluice (session mode)"}
ALL_TARGETS = ["direct", "pgbouncer", "pgbouncer-new", "pgsluice", "pgsluice-nometrics", "pgsluice-baseline",
               "pgsluice-session"]
ALL_MODES = ["simple", "extended", "prepared"]
# Targets per mode when --targets is not given.
DEFAULT_TARGETS = {"simple": ["direct", "pgbouncer", "pgsluice", "pgsluice-nometrics"],
                   "extended": ["direct", "pgbouncer", "pgsluice"],
                   "prepared": ["direct", "pgbouncer", "pgsluice", "pgsluice-session"]}
# Ratios: against PgBouncer's run of the same round and mode, except in prepared mode,
# which PgBouncer 1.18 does not support in transaction mode: against direct's run there.
RATIO_REF = {"simple": "pgbouncer", "extended": "pgbouncer", "prepared": "direct"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PGBOUNCERS = ("pgbouncer", "pgbouncer-new")  # targets that run a PgBouncer binary
PREPARED_STATEMENTS = 200  # max_prepared_statements of a PgBouncer that knows the key


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# ------------------------------------------------------------------ helpers


def run(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, **kw)


def pick_port():
    """A free port of 127.0.0.1, reserved in cluster.sh's reservation directory."""
    try:
        os.mkdir(PORT_RESERVATIONS)
        os.chmod(PORT_RESERVATIONS, 0o1777)
    except FileExistsError:
        pass
    held = []
    try:
        for _ in range(200):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            try:
                os.mkdir(os.path.join(PORT_RESERVATIONS, str(port)))
                return port
            except FileExistsError:
                continue
            except OSError:
                return port
    finally:
        for s in held:
            s.close()
    raise Failure("no free port")


def wait_listening(port, proc, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failure(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f}s")


def cpu_split(pid):
    """(utime, stime) (fields 14, 15 of /proc/PID/stat; all threads) in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid):
    """utime + stime of /proc/PID/stat (all threads) in seconds."""
    return sum(cpu_split(pid))


ANSI = re.compile(r"\x1b\[[0-9;]*m")


COUNT_KEYS = ("statements", "server_parses", "local_parses")


def parse_counts(path):
    """The last `statements=K server_parses=N local_parses=M` line pgsluice logged (in
    either log format)."""
    try:
        with open(path, errors="replace") as f:
            text = ANSI.sub("", f.read())
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        # Plain (`k=N`) or JSON (`"k":N`) log lines.
        if "server_parses" in line:
            vals = {}
            for k in COUNT_KEYS:
                m = re.search(rf'\b{k}(?:=|":)(\d+)', line)
                if m:
                    vals[k] = int(m.group(1))
            if "server_parses" in vals:
                found = vals
    return found


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return ANSI.sub("", "".join(f.readlines()[-n:]))
    except OSError as e:
        return f"({e})\n"


def oneline(text):
    return " / ".join(l.strip() for l in text.splitlines() if l.strip())


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def version_tuple(version):
    """(major, minor) of a "PgBouncer 1.18.0" line, or None."""
    m = re.search(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def short_version(version):
    """"1.18" of "PgBouncer 1.18.0", or the whole line."""
    v = version_tuple(version)
    return f"{v[0]}.{v[1]}" if v else (version or "?")


def name_pgbouncers(versions):
    """Display names of the PgBouncer targets from their --version lines, e.g.
    "PgBouncer 1.18"; TARGET_NAMES is shared with the report modules."""
    for t, v in (versions or {}).items():
        TARGET_NAMES[t] = f"PgBouncer {short_version(v)}"


def tool_version(cmd):
    try:
        return run(cmd, check=False).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


# ------------------------------------------------------------------ processes


def write_pgbouncer_config(d, port, primary_port, pool_size, max_client_conn, extra=""):
    """PgBouncer's ini and userlist in directory `d` (transaction mode, md5 for USER, the
    benchmark's database on the primary, `extra` lines appended); returns the ini's path."""
    md5 = "md5" + hashlib.md5((PASSWORD + USER).encode()).hexdigest()
    with open(os.path.join(d, "userlist.txt"), "w") as f:
        f.write(f'"{USER}" "{md5}"\n')
    conf = os.path.join(d, "pgbouncer.ini")
    with open(conf, "w") as f:
        f.write(f"""[databases]
{DATABASE} = host=127.0.0.1 port={primary_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {d}/userlist.txt
pool_mode = transaction
max_client_conn = {max_client_conn}
default_pool_size = {pool_size}
ignore_startup_parameters = extra_float_digits,options
logfile = {d}/pgbouncer.log
{extra}""")
    return conf


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="pgsluice-bench.")
        os.chmod(self.work, 0o755)  # PgBouncer runs as postgres and reads its files here
        self.cluster_dir = os.path.join(self.work, "cluster")
        self.cluster_started = False
        self.primary_port = None
        self.procs = {}  # name -> (Popen, pid of the pooler itself)
        self.logs = {}  # pgsluice target -> log file of its current process
        self.instances = 0  # pgsluice processes started so far
        self.stopped = set()  # pgsluice targets stopped on purpose, to be restarted
        self.ports = {}
        self.notes = []  # problems worth printing under the table
        self.dead = {}  # target -> reason it is no longer benchmarked
        self.pgbouncer_bins = {"pgbouncer": PGBOUNCER}
        if getattr(args, "pgbouncer_new", None):
            self.pgbouncer_bins["pgbouncer-new"] = args.pgbouncer_new
        self.pgbouncer_versions = {t: tool_version([b, "--version"])
                                   for t, b in self.pgbouncer_bins.items()}
        self.pgbouncer_version = self.pgbouncer_versions["pgbouncer"]
        name_pgbouncers(self.pgbouncer_versions)
        self.max_client_conn = 10000  # of both poolers
        self.tls_dir = None
        self.tls_ready = False  # PostgreSQL has ssl = on (--tls)

    # -- cluster

    def start_cluster(self):
        log(f"starting the cluster in {self.cluster_dir}")
        cmd = [CLUSTER_SH, "start", self.cluster_dir, "--watch-pid", str(os.getpid())]
        if self.args.replicas:
            cmd += ["--replicas", str(self.args.replicas)]
        self.cluster_started = True
        p = run(cmd, check=False)
        if p.returncode != 0:
            raise Failure(f"cluster.sh start failed:\n{p.stderr}")
        m = re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M)
        if not m:
            raise Failure(f"cluster.sh printed no PRIMARY_PORT:\n{p.stdout}")
        self.primary_port = int(m.group(1))
        self.ports["direct"] = self.primary_port
        if self.args.tls:
            self.make_certificates()
            self.enable_server_ssl()
        log(f"primary on port {self.primary_port}; pgbench -i -s {self.args.scale}")
        p = run(["pgbench", "-i", "-s", str(self.args.scale), "-h", "127.0.0.1",
                 "-p", str(self.primary_port), "-U", USER, DATABASE], check=False,
                env=self.pg_env())
        if p.returncode != 0:
            raise Failure(f"pgbench -i failed:\n{p.stdout}{p.stderr}")

    def stop_cluster(self):
        if self.cluster_started:
            run([CLUSTER_SH, "stop", self.cluster_dir], check=False)
            self.cluster_started = False

    def pg_env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PG") and not k.startswith("PGSLUICE_")}
        env["PGPASSWORD"] = PASSWORD
        env["PGCONNECT_TIMEOUT"] = "10"
        if self.args.tls and self.tls_ready:
            env["PGSSLMODE"] = "require"
        return env

    # -- TLS (--tls)

    def make_certificates(self):
        """A CA and a certificate for 127.0.0.1/localhost, with the openssl command line."""
        d = os.path.join(self.work, "tls")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        def ossl(*a):
            p = run(["openssl", *a], check=False)
            if p.returncode != 0:
                raise Failure(f"openssl {' '.join(a)} failed:\n{p.stderr}")
        ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=bench-ca", "-keyout", f"{d}/ca.key",
             "-out", f"{d}/ca.crt")
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", "/CN=localhost", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
        with open(f"{d}/ext.cnf", "w") as f:
            f.write("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
        ossl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey",
             f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf",
             "-out", f"{d}/server.crt")
        for name in os.listdir(d):
            os.chmod(os.path.join(d, name), 0o600 if name.endswith(".key") else 0o644)
            if os.geteuid() == 0:
                shutil.chown(os.path.join(d, name), "postgres", "postgres")
        self.tls_dir = d

    def enable_server_ssl(self):
        """ssl = on in the primary with the bench certificate; reloads it."""
        data = os.path.realpath(os.path.join(self.cluster_dir, "primary"))
        for name in ("server.crt", "server.key"):
            dst = os.path.join(data, name)
            shutil.copy(os.path.join(self.tls_dir, name), dst)
            os.chmod(dst, 0o600)
            if os.geteuid() == 0:
                shutil.chown(dst, "postgres", "postgres")
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        p = run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.primary_port),
                 "-U", USER, "-d", DATABASE, "-c", "SELECT pg_reload_conf()"],
                check=False, env=self.pg_env())
        if p.returncode != 0:
            raise Failure(f"reloading PostgreSQL with ssl = on failed: {p.stderr}")
        for _ in range(100):
            p = run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.primary_port),
                     "-U", USER, "-d", DATABASE, "-c", "SHOW ssl"],
                    check=False, env=self.pg_env())
            if p.stdout.strip() == "on":
                self.tls_ready = True
                return
            time.sleep(0.1)
        raise Failure("PostgreSQL did not turn ssl on")

    # -- poolers

    def start_pgbouncer(self, target="pgbouncer"):
        """Starts PgBouncer ("pgbouncer": 1.18, "pgbouncer-new": --pgbouncer-new); again
        after stop_pgbouncer with the same files but a new port. A PgBouncer of 1.21 or
        later gets max_prepared_statements (1.18 refuses to start with the key)."""
        binary = self.pgbouncer_bins.get(target)
        if not binary or not os.access(binary, os.X_OK):
            raise Failure(f"{target}: no PgBouncer binary ({binary})")
        prepared = ""
        if (version_tuple(self.pgbouncer_versions[target]) or (0, 0)) >= (1, 21):
            prepared = f"max_prepared_statements = {PREPARED_STATEMENTS}\n"
        d = os.path.join(self.work, target)
        os.makedirs(d, exist_ok=True)
        port = pick_port()
        conf = write_pgbouncer_config(d, port, self.primary_port, self.args.pool_size,
                                      self.max_client_conn, prepared + self.pgbouncer_tls())
        shutil.chown(d, "postgres", "postgres")
        for name in os.listdir(d):
            shutil.chown(os.path.join(d, name), "postgres", "postgres")
        # PgBouncer refuses to run as root. Not through runuser: its pam_limits would put
        # RLIMIT_NOFILE back to 1024, too few for max_client_conn.
        as_postgres = {}
        if os.geteuid() == 0:
            as_postgres = {"user": "postgres", "group": "postgres", "extra_groups": []}
        out = open(os.path.join(d, "stderr.log"), "w")
        proc = subprocess.Popen([binary, conf], cwd=d, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                **as_postgres)
        pid = proc.pid
        self.procs[target] = (proc, pid)
        self.ports[target] = port
        try:
            wait_listening(port, proc, target)
        except Failure as e:
            raise Failure(f"{e}\n{tail(out.name)}{tail(os.path.join(d, 'pgbouncer.log'))}")
        log(f"{target} (pid {pid}, {binary}) on port {port}")

    def pgbouncer_tls(self):
        if not self.args.tls:
            return ""
        d = self.tls_dir
        return (f"client_tls_sslmode = require\nclient_tls_cert_file = {d}/server.crt\n"
                f"client_tls_key_file = {d}/server.key\nserver_tls_sslmode = require\n")

    def stop_pgbouncer(self, target="pgbouncer", timeout=10):
        """SIGTERM (PgBouncer's immediate shutdown) and wait for the exit."""
        proc, pid = self.procs.pop(target)
        if proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def start_pgsluice(self, target="pgsluice"):
        """Starts a pgsluice process for `target`: "pgsluice" (transaction mode, pool size
        --pool-size) or "pgsluice-session" (session mode, pool size --clients). The config
        and port stay the same across restarts; each process gets its own log file."""
        binary = self.args.binary
        if target == "pgsluice-baseline":
            binary = self.args.baseline_binary
        if not os.access(binary, os.X_OK):
            raise Failure(f"{binary} not found")
        if target == "pgsluice-session":
            pool_mode, pool_size = "session", self.args.clients
        else:
            pool_mode, pool_size = "transaction", self.args.pool_size
        # pgsluice-nometrics: statistics and the slow query log off, to measure their cost.
        general_extra, sections_extra, db_extra = "", "", ""
        if self.args.tls:
            key = os.path.join(self.tls_dir, "server.key")
            sections_extra += (f'\n[tls]\nclient_mode = "require"\n'
                               f'cert_file = "{self.tls_dir}/server.crt"\nkey_file = "{key}"\n')
            db_extra = 'server_tls = "require"\n'
        if target == "pgsluice-nometrics":
            general_extra = "slow_query_threshold = 0\n"
            sections_extra += "\n[metrics]\nenabled = false\n"
        d = os.path.join(self.work, target)
        conf = os.path.join(d, "pgsluice.toml")
        if target not in self.ports:
            os.mkdir(d)
            port = pick_port()
            with open(conf, "w") as f:
                f.write(f"""[general]
listen_addr = "127.0.0.1:{port}"
workers = {self.args.workers}
pool_mode = "{pool_mode}"
max_client_conn = {self.max_client_conn}
default_pool_size = {pool_size}
{general_extra}
[auth]
type = "md5"

[[users]]
name = "{USER}"
password = "{PASSWORD}"

[databases.{DATABASE}]
dbname = "{DATABASE}"
primary = "127.0.0.1:{self.primary_port}"
{db_extra}{sections_extra}""")
            self.ports[target] = port
        port = self.ports[target]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGSLUICE_")}
        env["NO_COLOR"] = "1"
        self.instances += 1
        logpath = os.path.join(d, f"pgsluice-{self.instances}.log")
        self.logs[target] = logpath
        logf = open(logpath, "w")
        proc = subprocess.Popen([binary, "--config", conf], cwd=d, env=env,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
        logf.close()
        self.procs[target] = (proc, proc.pid)
        self.stopped.discard(target)
        try:
            wait_listening(port, proc, target)
        except Failure as e:
            raise Failure(f"{e}\n{tail(logpath)}")
        log(f"{target} (pid {proc.pid}, {pool_mode} mode, pool size {pool_size}, {binary}) "
            f"on port {port}")

    def stop_pgsluice(self, target, timeout=45):
        """SIGTERM, wait for the drain and exit; returns (exit status, counts from the exit
        line: {"statements", "server_parses", "local_parses"} or None)."""
        proc, pid = self.procs.pop(target)
        self.stopped.add(target)
        if proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=5)
                return f"killed after {timeout}s", None
        return proc.returncode, parse_counts(self.logs[target])

    def smoke(self, target):
        """One query through the target, so a broken target is reported before the runs."""
        p = run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(self.ports[target]),
                 "-U", USER, "-d", DATABASE, "-c", "SELECT count(*) FROM pgbench_branches"],
                check=False, env=self.pg_env(), timeout=30)
        if p.returncode != 0 or p.stdout.strip() != str(self.args.scale):
            raise Failure(f"smoke query through {target} failed (status {p.returncode}): "
                          f"{(p.stdout + p.stderr).strip()}")

    def pooler_log(self, target):
        if target in PGBOUNCERS:
            return os.path.join(self.work, target, "pgbouncer.log")
        return self.logs[target]

    def stop_poolers(self):
        for name, (proc, pid) in list(self.procs.items()):
            if proc.poll() is None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    for p in {pid, proc.pid}:
                        try:
                            os.kill(p, signal.SIGKILL)
                        except OSError:
                            pass
                    proc.wait(timeout=5)
            del self.procs[name]

    def cleanup(self):
        try:
            self.stop_poolers()
        finally:
            self.stop_cluster()
            shutil.rmtree(self.work, ignore_errors=True)

    # -- runs

    def start_warm(self, targets):
        """Starts the cluster, then each pooler of `targets` ("pgbouncer*" or "pgsluice*"),
        each warmed up with 2 s of `-M simple` (for the tools that use this class)."""
        self.start_cluster()
        for t in targets:
            if t.startswith("pgbouncer"):
                self.start_pgbouncer(t)
            else:
                self.start_pgsluice(t)
            self.pgbench(t, "simple", 2, "warmup")

    def alive(self, target):
        if target == "direct":
            return True
        proc, _ = self.procs[target]
        return proc.poll() is None

    def pgbench(self, target, mode, duration, tag, results_dir=None, clients=None, jobs=None,
                connect=False):
        """One pgbench run (clients and jobs default to --clients and --jobs; connect: -C, a
        new connection per transaction); returns a dict of measurements."""
        clients = clients or self.args.clients
        jobs = min(jobs or self.args.jobs, clients)
        logdir = os.path.join(self.work, "txlog")
        shutil.rmtree(logdir, ignore_errors=True)
        os.mkdir(logdir)
        cmd = ["pgbench", "-n", "-S", "-M", mode, "-c", str(clients), "-j", str(jobs)]
        if connect:
            cmd.append("-C")
        cmd += ["-T", str(duration), "-h", "127.0.0.1", "-p", str(self.ports[target]),
                "-U", USER, "-l", f"--log-prefix={logdir}/tx", DATABASE]
        pid = self.procs[target][1] if target != "direct" else None
        split0 = cpu_split(pid) if pid else None
        t0 = time.monotonic()
        p = run(cmd, check=False, env=self.pg_env(), timeout=duration + 120)
        wall = time.monotonic() - t0
        split1 = None
        if pid:
            try:
                split1 = cpu_split(pid)
            except OSError:
                pass
        cpu0 = sum(split0) if split0 else None
        cpu1 = sum(split1) if split1 else None
        r = {"target": target, "mode": mode, "clients": clients, "status": p.returncode,
             "wall": wall}

        def grab(pattern, conv=float):
            m = re.search(pattern, p.stdout)
            return conv(m.group(1)) if m else None

        # With -C pgbench says "(including reconnection times)".
        r["tps"] = grab(r"tps = ([\d.]+) \((?:without initial connection|including reconnection) "
                        r"times?\)")
        r["lat_avg"] = grab(r"latency average = ([\d.]+) ms")
        r["conn_ms"] = grab(r"average connection time = ([\d.]+) ms")  # -C only
        r["conn_init_ms"] = grab(r"initial connection time = ([\d.]+) ms")  # without -C
        r["txns"] = grab(r"number of transactions actually processed: (\d+)", int)
        r["failed"] = grab(r"number of failed transactions: (\d+)", int)
        r["aborted"] = len(re.findall(r"client \d+ .*aborted", p.stderr))
        errors = {}  # distinct server/pgbench error messages -> count
        for line in p.stderr.splitlines():
            m = (re.search(r"(?:ERROR|FATAL):\s+(.+)$", line)
                 or re.search(r"\berror:\s+(.+)$", line))
            if m:
                msg = re.sub(r"\bclient \d+", "client N", m.group(1).strip())
                errors[msg] = errors.get(msg, 0) + 1
        r["errors"] = errors
        lats = []
        for name in os.listdir(logdir):
            with open(os.path.join(logdir, name)) as f:
                for line in f:
                    parts = line.split(None, 3)
                    if len(parts) >= 3 and parts[2].isdigit():
                        lats.append(int(parts[2]))
        shutil.rmtree(logdir, ignore_errors=True)
        lats.sort()
        r["p50"] = percentile(lats, 50) / 1000.0 if lats else None
        r["p99"] = percentile(lats, 99) / 1000.0 if lats else None
        if cpu0 is not None and cpu1 is not None and r["txns"]:
            r["cpu_us"] = (cpu1 - cpu0) * 1e6 / r["txns"]
            r["cpu_s"] = cpu1 - cpu0
            r["user_us"] = (split1[0] - split0[0]) * 1e6 / r["txns"]
            r["sys_us"] = (split1[1] - split0[1]) * 1e6 / r["txns"]
        else:
            r["cpu_us"] = None
        if results_dir:
            err = p.stderr.splitlines()
            if len(err) > 60:
                err = err[:30] + [f"... ({len(err) - 60} lines left out)"] + err[-30:]
            r["file"] = os.path.join(results_dir, f"{tag}.txt")
            with open(r["file"], "w") as f:
                f.write("$ " + shlex.join(cmd) + "\n")
                f.write(f"# exit status {p.returncode}, wall {wall:.2f}s")
                if r["cpu_us"] is not None:
                    f.write(f", pooler pid {pid} cpu {r['cpu_s']:.2f}s = {r['cpu_us']:.2f} us/txn")
                if r["p50"] is not None:
                    f.write(f", p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms "
                            f"({len(lats)} logged txns)")
                f.write("\n" + p.stdout)
                if err:
                    f.write("# stderr:\n" + "\n".join(err) + "\n")
        return r


# ------------------------------------------------------------------ report


def fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    return f"{v:,.{nd}f}" if abs(v) >= 1000 else f"{v:.{nd}f}"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def md_cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def count_cell(vals):
    """Median of per-run counts, with the range when the runs differ."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    txt = str(int(m)) if m == int(m) else f"{m:.1f}"
    if min(vals) != max(vals):
        txt += f" ({min(vals)}-{max(vals)})"
    return txt


def top_errors(runs, n=2):
    errors = {}
    for r in runs:
        for msg, k in r.get("errors", {}).items():
            errors[msg] = errors.get(msg, 0) + k
    top = sorted(errors.items(), key=lambda kv: -kv[1])[:n]
    return "; ".join(f"`{msg}` ×{k}" for msg, k in top)


def pgbouncer_prepared_support(version):
    """PgBouncer supports protocol-level prepared statements in transaction mode from
    1.21 on (max_prepared_statements; the bench sets it there)."""
    v = version_tuple(version)
    if v and v < (1, 21):
        return f"unsupported ({v[0]}.{v[1]})"
    return f"max_prepared_statements = {PREPARED_STATEMENTS}"


def build_report(bench, results, header, mode_targets, modes):
    args = bench.args
    lines = [header, ""]
    lines.append("| target | mode | TPS | TPS ratio¹ | avg lat ms | p50 ms | p99 ms "
                 "| pooler CPU µs/txn | CPU ratio vs PgBouncer² | failed "
                 "| server Parse³ | answered by pgsluice³ | notes |")
    lines.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for mode in modes:
        ref = RATIO_REF[mode]
        for t in mode_targets[mode]:
            runs = [r for r in results if r["target"] == t and r["mode"] == mode]
            if not runs:
                continue
            ok = [r for r in runs if r["tps"] is not None]
            tps_ratio, cpu_ratio = [], []
            for r in ok:  # paired with the reference's run of the same round
                b = next((x for x in results if x["target"] == ref and x["mode"] == mode
                          and x["round"] == r["round"]), None)
                if b and b["tps"]:
                    tps_ratio.append(r["tps"] / b["tps"])
                if (ref == "pgbouncer" and b and b.get("cpu_us")
                        and r.get("cpu_us") is not None):
                    cpu_ratio.append(r["cpu_us"] / b["cpu_us"])
            failed = sum(r["failed"] or 0 for r in runs)
            aborted = sum(r["aborted"] for r in runs)
            bad = sum(1 for r in runs if r["status"] != 0)
            ftxt = str(failed)
            if aborted:
                ftxt += f" ({aborted} clients aborted)"
            if bad:
                ftxt += f" ({bad}/{len(runs)} runs exited non-zero)"
            notes = []
            if t in PGBOUNCERS and mode == "prepared":
                notes.append(pgbouncer_prepared_support(bench.pgbouncer_versions[t]))
            if t == "pgsluice-session":
                notes.append(f"session mode, pool size {args.clients} = clients, no client "
                             f"waits")
            errs = top_errors(runs)
            if errs:
                notes.append("pgbench errors: " + errs)
            if aborted:
                notes.append("TPS and latencies are those of the clients that did not abort; "
                             "no ratio")
            if t == "pgsluice" and mode == "prepared":
                stm = [r.get("statements") for r in runs if r.get("statements") is not None]
                if stm:
                    notes.append(f"{count_cell(stm)} distinct statement(s); fresh process "
                                 f"per run")
                missing = sum(1 for r in runs if r.get("server_parses") is None)
                if missing:
                    notes.append(f"no exit counts for {missing}/{len(runs)} runs")
            if aborted:
                ratio = cratio = "n/a"
            elif ref == "pgbouncer":
                ratio = "1.00" if t == "pgbouncer" else fmt(med(tps_ratio))
                cratio = ("n/a" if t == "direct" else
                          "1.00" if t == "pgbouncer" else fmt(med(cpu_ratio)))
            else:
                ratio = "1.00" if t == ref else fmt(med(tps_ratio))
                cratio = "n/a"
            counted = t == "pgsluice" and mode == "prepared"
            lines.append("| " + " | ".join([
                TARGET_NAMES[t], mode,
                fmt(med(r["tps"] for r in ok), 0),
                ratio,
                fmt(med(r["lat_avg"] for r in ok), 3),
                fmt(med(r["p50"] for r in ok), 3),
                fmt(med(r["p99"] for r in ok), 3),
                fmt(med(r["cpu_us"] for r in ok), 1) if t != "direct" else "n/a",
                cratio,
                ftxt,
                count_cell(r.get("server_parses") for r in runs) if counted else "n/a",
                count_cell(r.get("local_parses") for r in runs) if counted else "n/a",
                md_cell("; ".join(notes))]) + " |")
    lines.append("")
    lines.append("Medians over rounds. failed = failed transactions summed over all rounds "
                 "(pgbench 15 retries no other errors: a client that gets an error aborts and "
                 "is counted under clients aborted, not as failed).")
    lines.append("")
    lines.append("¹ TPS ratio: median of the per-round ratios against PgBouncer's run of the "
                 "same round and mode in simple and extended mode; **in prepared mode against "
                 "direct's run** of the same round, since PgBouncer 1.18 does not support "
                 "prepared statements in transaction mode.")
    lines.append("")
    lines.append("² CPU ratio: median of the per-round ratios of pooler CPU per transaction "
                 "against PgBouncer's run of the same round and mode; n/a in prepared mode "
                 "(no working PgBouncer run to compare with, and direct has no pooler).")
    lines.append("")
    lines.append("³ pgsluice in transaction mode, prepared mode only: Parse messages pgsluice "
                 "sent to PostgreSQL during the run (`server_parses`) and client Parse "
                 "messages it answered itself without a server round trip (`local_parses`), "
                 "from the line a fresh pgsluice process logs at exit (median over runs, "
                 "range in brackets). n/a elsewhere: direct and session mode pass every "
                 "client's Parse to its own server (pgbench prepares each statement once per "
                 "connection: clients × statements per run), and simple/extended mode send "
                 "no named Parse.")
    for mode in modes:
        cpu, tps = [], []
        for r in results:
            if r["target"] != "pgsluice" or r["mode"] != mode:
                continue
            off = next((x for x in results if x["target"] == "pgsluice-nometrics"
                        and x["mode"] == mode and x["round"] == r["round"]), None)
            if off and off.get("cpu_us") and r.get("cpu_us") is not None:
                cpu.append(r["cpu_us"] / off["cpu_us"])
            if off and off["tps"] and r["tps"]:
                tps.append(r["tps"] / off["tps"])
        if cpu:
            lines.append("")
            lines.append(f"⁴ Metrics cost, {mode} mode: pgsluice with metrics and the slow query "
                         f"log on (defaults) against pgsluice with both off, same round: CPU per "
                         f"transaction ×{fmt(med(cpu))} (rounds: "
                         f"{', '.join(fmt(x) for x in cpu)}), TPS ×{fmt(med(tps))}.")
    split_rows = []
    for mode in modes:
        for t in mode_targets[mode]:
            ok = [r for r in results if r["target"] == t and r["mode"] == mode
                  and r.get("user_us") is not None]
            if ok:
                split_rows.append(f"| {TARGET_NAMES[t]} | {mode} | "
                                  f"{fmt(med(r['user_us'] for r in ok), 2)} | "
                                  f"{fmt(med(r['sys_us'] for r in ok), 2)} |")
    if split_rows:
        lines.append("")
        lines.append("⁵ Pooler CPU per transaction split into user and system (kernel) time, "
                     "medians over rounds (`/proc/PID/stat` utime and stime, whose tick is "
                     f"{1e6 / CLK_TCK:,.0f} µs: over a run of some 100,000 transactions the "
                     "split is good to about 0.1 µs per transaction):")
        lines.append("")
        lines.append("| target | mode | user µs/txn | system µs/txn |")
        lines.append("|---|---|--:|--:|")
        lines.extend(split_rows)
    for t, why in bench.dead.items():
        lines.append("")
        lines.append(f"**{TARGET_NAMES[t]}: {why}**")
    for n in bench.notes:
        lines.append("")
        lines.append(n)
    lines.append("")
    lines.append("<details><summary>every run</summary>")
    lines.append("")
    lines.append("| round | mode | target | TPS | avg lat ms | p50 ms | p99 ms | CPU µs/txn "
                 "| failed | aborted clients | server Parse | answered by pgsluice | exit |")
    lines.append("|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        lines.append(f"| {r['round']} | {r['mode']} | {TARGET_NAMES[r['target']]} | "
                     f"{fmt(r['tps'], 0)} | {fmt(r['lat_avg'], 3)} | {fmt(r['p50'], 3)} | "
                     f"{fmt(r['p99'], 3)} | {fmt(r.get('cpu_us'), 1)} | {fmt(r['failed'])} | "
                     f"{r['aborted']} | {fmt(r.get('server_parses'))} | "
                     f"{fmt(r.get('local_parses'))} | {r['status']} |")
    lines.append("")
    lines.append("</details>")
    return "\n".join(lines) + "\n"


def pooler_args(binary, baseline_binary, pgbouncer_new, modes, clients=None):
    """For the tools that run poolers through this module: the pooler targets (PgBouncer
    1.18, the newer PgBouncer when given, pgsluice, the baseline pgsluice when given) and
    this module's parsed arguments for them (`clients`: pgbench's -c, when not the
    default)."""
    targets = ["pgbouncer"] + (["pgbouncer-new"] if pgbouncer_new else []) + ["pgsluice"] \
        + (["pgsluice-baseline"] if baseline_binary else [])
    argv = ["bench.py", "--no-build", "--modes", modes, "--targets", ",".join(targets)]
    if clients:
        argv += ["--clients", str(clients)]
    for flag, value in (("--binary", binary), ("--baseline-binary", baseline_binary),
                        ("--pgbouncer-new", pgbouncer_new)):
        if value:
            argv += [flag, value]
    saved, sys.argv = sys.argv, argv
    try:
        return targets, parse_args()
    finally:
        sys.argv = saved


def raise_fd_limit(n):
    """Raises this process's RLIMIT_NOFILE to at least n (past the hard limit only as root);
    pgbench and the poolers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(hard, n)))
    except (ValueError, OSError) as e:
        raise Failure(f"need {n} file descriptors, RLIMIT_NOFILE is {soft} (hard {hard}): {e}")


def cargo_build():
    """cargo build --release; None when it worked, else a note saying why pgsluice is not
    benchmarked."""
    log("cargo build --release")
    p = subprocess.run(["cargo", "build", "--release"], cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode == 0:
        return None
    errs = [l for l in p.stdout.splitlines() if l.startswith("error")]
    note = "cargo build --release failed, pgsluice not benchmarked: " + "; ".join(errs[:5])
    log(p.stdout[-3000:])
    log(note)
    return note


def git_commit():
    """HEAD's short hash, marked when tracked files have uncommitted changes."""
    try:
        commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).stdout.strip()
        if run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
               check=False).stdout.strip():
            commit += " + uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return commit


def machine():
    """The machine, as "nproc N (CPU model)"."""
    cpu_model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu_model = m.group(1) if m else "?"
    except OSError:
        pass
    return f"nproc {run(['nproc'], check=False).stdout.strip()} ({cpu_model})"


# ------------------------------------------------------------------ main


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument("--clients", type=int, default=50,
                    help="pgbench -c (default 50); also pgsluice-session's pool size")
    ap.add_argument("--jobs", type=int, default=2, help="pgbench -j (default 2)")
    ap.add_argument("--pool-size", type=int, default=20,
                    help="pool size of PgBouncer and pgsluice in transaction mode (20)")
    ap.add_argument("--workers", type=int, default=1,
                    help="pgsluice general.workers (default 1, as pgsluice; 0 = one per core)")
    ap.add_argument("--modes", default="simple,extended,prepared",
                    help="simple,extended,prepared (default all three)")
    ap.add_argument("--targets", default=None,
                    help="direct,pgbouncer,pgsluice,pgsluice-nometrics,pgsluice-session, for "
                         "every mode (default: direct,pgbouncer,pgsluice, plus "
                         "pgsluice-nometrics in simple mode and pgsluice-session in prepared "
                         "mode)")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (default 10)")
    ap.add_argument("--replicas", type=int, default=0, help="cluster replicas (default 0)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="seconds of unrecorded pgbench per target before round 1, and of "
                         "-M simple on each fresh pgsluice before a prepared run (default 2)")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    ap.add_argument("--binary", default=None, help="pgsluice binary (default target/release)")
    ap.add_argument("--quick", action="store_true", help="--duration 3 --rounds 1")
    ap.add_argument("--connect", action="store_true",
                    help="pgbench -C: a new connection per transaction (TPS is then "
                         "connections per second, CPU per transaction per connection)")
    ap.add_argument("--tls", action="store_true",
                    help="TLS on every hop: clients to poolers, poolers (and direct) to PostgreSQL")
    ap.add_argument("--baseline-binary", default=None,
                    help="another pgsluice build, run as target pgsluice-baseline in every mode")
    ap.add_argument("--pgbouncer-new", default=None, metavar="PATH",
                    help="a newer PgBouncer binary, run as target pgbouncer-new in every mode "
                         "(with max_prepared_statements)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 3, 1
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in ALL_MODES:
            ap.error(f"unknown mode {m!r} ({', '.join(ALL_MODES)})")
    if args.targets is None:
        args.mode_targets = {m: list(DEFAULT_TARGETS[m]) for m in args.modes}
        if args.baseline_binary:
            for m in args.modes:
                args.mode_targets[m].append("pgsluice-baseline")
        if args.pgbouncer_new:
            for m in args.modes:
                args.mode_targets[m].insert(2, "pgbouncer-new")
    else:
        chosen = [t.strip() for t in args.targets.split(",") if t.strip()]
        for t in chosen:
            if t not in ALL_TARGETS:
                ap.error(f"unknown target {t!r} ({', '.join(ALL_TARGETS)})")
        args.mode_targets = {m: [t for t in ALL_TARGETS if t in chosen] for m in args.modes}
    args.targets = [t for t in ALL_TARGETS
                    if any(t in ts for ts in args.mode_targets.values())]
    if "pgsluice-baseline" in args.targets and not args.baseline_binary:
        ap.error("target pgsluice-baseline needs --baseline-binary")
    if "pgbouncer-new" in args.targets and not args.pgbouncer_new:
        ap.error("target pgbouncer-new needs --pgbouncer-new")
    if args.binary is None:
        tdir = os.environ.get("CARGO_TARGET_DIR", "target")
        if not os.path.isabs(tdir):
            tdir = os.path.join(ROOT, tdir)
        args.binary = os.path.join(tdir, "release", "pgsluice")
    return args


def restart_pgsluice(bench, target, why):
    """Starts a fresh pgsluice process for target and warms it up with -M simple (which
    sends no named Parse, so it adds nothing to the exit counts). False if it failed."""
    if target in bench.procs:
        bench.stop_pgsluice(target)
    log(f"fresh {target} process ({why})")
    try:
        bench.start_pgsluice(target)
    except Failure as e:
        bench.dead[target] = "did not restart: " + oneline(str(e))
        log(bench.dead[target])
        return False
    if bench.args.warmup > 0:
        w = bench.pgbench(target, "simple", bench.args.warmup, "warmup")
        if w["status"] != 0 or not w["txns"]:
            bench.dead[target] = (f"warm-up after restart failed (exit {w['status']}); log tail: "
                                  + oneline(tail(bench.pooler_log(target), 10)))
            log(bench.dead[target])
            return False
    return True


def run_rounds(bench, args, live, results, results_dir):
    for rnd in range(1, args.rounds + 1):
        k = (rnd - 1) % max(1, len(live))
        order = live[k:] + live[:k]
        for mode in args.modes:
            for t in order:
                if t not in args.mode_targets[mode] or t in bench.dead:
                    continue
                counted = t == "pgsluice" and mode == "prepared"
                if (t == "direct" or t in bench.procs) and not bench.alive(t):
                    proc = bench.procs[t][0]
                    bench.dead[t] = (f"exited with status {proc.returncode} during the "
                                     f"benchmark; log tail: "
                                     + oneline(tail(bench.pooler_log(t), 10)))
                    log(bench.dead[t])
                    continue
                if counted or t in bench.stopped:
                    # A prepared run gets a process of its own, so that its exit counts
                    # are this run's; the process after it is fresh and warmed up too.
                    if not restart_pgsluice(bench, t, "per-run Parse counts" if counted
                                            else "after a prepared run"):
                        continue
                log(f"round {rnd}/{args.rounds}: {mode} via {t} ({args.duration}s)")
                r = bench.pgbench(t, mode, args.duration, f"r{rnd}-{mode}-{t}", results_dir,
                                  connect=args.connect)
                r["round"] = rnd
                if counted:
                    status, counts = bench.stop_pgsluice(t)
                    r.update(counts or {})
                    line = (f"# pgsluice exit status {status}; exit counts: "
                            + (" ".join(f"{k}={v}" for k, v in counts.items()) if counts
                               else "none found in its log") + "\n")
                    if r.get("file"):
                        with open(r["file"], "a") as f:
                            f.write(line)
                    if counts is None:
                        bench.notes.append(f"pgsluice logged no exit counts after round {rnd}'s "
                                           f"prepared run (exit status {status}).")
                results.append(r)
                extra = ""
                if counted:
                    extra = (f" server_parses={r.get('server_parses')} "
                             f"local_parses={r.get('local_parses')} "
                             f"statements={r.get('statements')}")
                log(f"  tps={fmt(r['tps'], 0)} p99={fmt(r['p99'], 3)}ms "
                    f"cpu/txn µs={fmt(r.get('cpu_us'), 1)} failed={r['failed']} "
                    f"aborted={r['aborted']} exit={r['status']}{extra}")
                time.sleep(1)


def main():
    args = parse_args()
    command = "python3 " + shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    targets = args.targets
    sluices = [t for t in targets if t.startswith("pgsluice")]
    build_note = cargo_build() if sluices and not args.no_build else None

    stamp = datetime.datetime.now(datetime.timezone.utc)
    results_dir = os.path.join(ROOT, "integration", "results", stamp.strftime("%Y%m%dT%H%M%SZ"))
    os.makedirs(results_dir, exist_ok=True)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    bench = Bench(args)
    results = []
    try:
        if build_note:
            for t in sluices:
                bench.dead[t] = build_note
        bench.start_cluster()
        for t in PGBOUNCERS:
            if t not in targets:
                continue
            try:
                bench.start_pgbouncer(t)
                bench.smoke(t)
            except Failure as e:
                bench.dead[t] = f"did not start: {e}"
        for t in sluices:
            if t in bench.dead:
                continue
            try:
                bench.start_pgsluice(t)
                bench.smoke(t)
            except Failure as e:
                msg = str(e)
                if t in bench.procs:
                    msg += "\nlog tail:\n" + tail(bench.pooler_log(t), 20)
                bench.dead[t] = "did not work: " + oneline(msg)
                log(msg)
        live = [t for t in targets if t not in bench.dead]
        if args.warmup > 0:
            warm_mode = args.modes[0] if args.modes[0] != "prepared" else "simple"
            for t in live:
                log(f"warm-up {args.warmup}s: {t}")
                bench.pgbench(t, warm_mode, args.warmup, "warmup")
        try:
            run_rounds(bench, args, live, results, results_dir)
        except KeyboardInterrupt:
            bench.notes.append(f"**Interrupted** after {len(results)} runs: partial results.")
            log("interrupted: writing the partial results")
        for t in ("pgsluice", "pgsluice-nometrics", "pgsluice-baseline", "pgsluice-session",
                  "pgbouncer", "pgbouncer-new"):
            if t in bench.procs or t in bench.logs:
                with open(os.path.join(results_dir, f"{t}.log.tail"), "w") as f:
                    f.write(tail(bench.pooler_log(t), 40))
            if t in bench.procs:
                if not bench.alive(t) and t not in bench.dead:
                    bench.dead[t] = f"exited with status {bench.procs[t][0].returncode}"
    finally:
        bench.cleanup()

    header = (f"`{command}` — {stamp.strftime('%Y-%m-%d %H:%M UTC')}, {machine()}, "
              f"{tool_version(['pgbench', '--version'])}, "
              + "".join(f"{v}, " for v in bench.pgbouncer_versions.values())
              + f"pgsluice commit {git_commit()}; "
              f"pgbench -n -S -M MODE -c {args.clients} -j {args.jobs} -T {args.duration}, "
              f"{args.rounds} round(s), pool size {args.pool_size} (pgsluice session mode: "
              f"{args.clients}), pgbench scale {args.scale}, "
              f"pgsluice workers {args.workers or 'one per core'}"
              + (", **TLS on both sides** (sslmode=require; PgBouncer client_tls_sslmode and "
                 "server_tls_sslmode = require; pgsluice client_mode and server_tls = require)"
                 if args.tls else ""))
    report = build_report(bench, results, header, args.mode_targets, args.modes)
    with open(os.path.join(results_dir, "summary.md"), "w") as f:
        f.write(report)
    print(report)
    log(f"results in {os.path.relpath(results_dir, ROOT)}")
    return 0 if results else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
