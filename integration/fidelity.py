#!/usr/bin/env python3
"""PostgreSQL's own regression suite, directly and through pgsluice (issue 17).

    python3 integration/fidelity.py [--modes direct,session,transaction]
                                    [--schedule parallel|serial] [--max-connections N]
                                    [--tests a,b,c] [--out DIR] [--no-build]

For each mode it starts a throwaway primary (integration/cluster.sh), creates the database
`regression` directly (as `pg_regress` would without --use-existing: template0 and the same
ALTER DATABASE settings), and runs `pg_regress --use-existing` with the schedule against the
primary (`direct`) or against target/release/pgsluice in front of it (`session`,
`transaction`). Every mode gets its own cluster, so no run sees another's leftovers. A mode
may be named more than once (`transaction,transaction`): cross-client effects vary between
runs.

What it fetches and builds is cached under $FIDELITY_CACHE (default
/var/cache/pgsluice-fidelity), so a second run starts at once:

* the regression suite (src/test/regress) from Debian's source package of the installed
  server's exact version (`apt-get source postgresql-15=<version>`); when apt has no deb-src
  line, one is added in its own file (/etc/apt/sources.list.d/pgsluice-fidelity-src.sources,
  the system's own Debian URIs with `Types: deb-src`, so binary installs are untouched);
  FIDELITY_PG_SRC=<a postgres source tree> skips apt altogether;
* `regress.so`, built with PGXS from that source against postgresql-server-dev-15 (installed
  at the server's version when missing), next to links to the server's autoinc.so and
  refint.so (the suite loads all three from one --dlpath).

`pg_regress` itself is the one postgresql-client-15 installs for the same version.

Output (default target/fidelity/): per mode, DIR/<mode>/{pg_regress.log, regression.diffs,
results.tsv, diffs/<test>.diff, pgsluice.log, pgsluice.toml, postgres.log}; DIR/table.tsv
with every test; on stdout the table of the tests that failed in any mode, and the totals.

Everything runs under `nice` (the suite is CPU-heavy; the machine is shared).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO / "integration" / "cluster.sh"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_REGRESS = PG_BIN.parent / "lib" / "pgxs" / "src" / "test" / "regress" / "pg_regress"
CACHE = Path(os.environ.get("FIDELITY_CACHE", "/var/cache/pgsluice-fidelity"))
SRC_LIST = Path("/etc/apt/sources.list.d/pgsluice-fidelity-src.sources")
NICE = ["nice", "-n", "10"]
MODES = ("direct", "session", "transaction", "statement")
# What pg_regress sets on a database it creates itself (pg_regress.c, create_database).
DB_SETTINGS = {
    "lc_messages": "C",
    "lc_monetary": "C",
    "lc_numeric": "C",
    "lc_time": "C",
    "bytea_output": "hex",
    "timezone_abbreviations": "Default",
}


def log(msg):
    print(f"fidelity: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(2)


def run(cmd, **kw):
    """subprocess.run that fails loudly, with the command's output."""
    res = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if res.returncode != 0:
        die(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


def is_root():
    return os.geteuid() == 0


# ---------------------------------------------------------------- versions and sources


def pkg_version(pkg):
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                         text=True, capture_output=True)
    return res.stdout.strip() if res.returncode == 0 else None


def server_version():
    """(Debian package version, upstream version) of the installed server."""
    out = run([str(PG_BIN / "postgres"), "--version"])
    upstream = re.search(r"\) (\d+\.\d+)", out)
    if not upstream:
        die(f"cannot read the server version from {out!r}")
    deb = pkg_version("postgresql-15")
    return deb, upstream.group(1)


def has_source_version(version):
    out = subprocess.run(["apt-cache", "showsrc", "postgresql-15"], text=True,
                         capture_output=True).stdout
    return f"Version: {version}" in out


def add_deb_src():
    """A deb-src twin of the system's Debian sources, in a file of its own."""
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.exists():
        text = src.read_text()
        if "Types: deb-src" in text or "Types: deb deb-src" in text:
            return
        text = re.sub(r"^Types: deb$", "Types: deb-src", text, flags=re.M)
    else:
        text = ("Types: deb-src\nURIs: http://deb.debian.org/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb-src\nURIs: http://deb.debian.org/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    header = "# Added by pgsluice integration/fidelity.py: source packages only.\n"
    SRC_LIST.write_text(header + text)
    log(f"added {SRC_LIST}")


def regress_sources(deb_version):
    """Directory holding the suite (sql/, expected/, data/, parallel_schedule, regress.c)."""
    if os.environ.get("FIDELITY_PG_SRC"):
        d = Path(os.environ["FIDELITY_PG_SRC"]) / "src" / "test" / "regress"
        if not (d / "parallel_schedule").exists():
            die(f"FIDELITY_PG_SRC: no {d}/parallel_schedule")
        return d
    dest = CACHE / f"regress-{deb_version}"
    if (dest / "parallel_schedule").exists():
        return dest
    if not is_root():
        die("the regression suite is not cached yet: run once as root (apt-get source), "
            "or set FIDELITY_PG_SRC to a PostgreSQL source tree of the server's version")
    if not has_source_version(deb_version):
        add_deb_src()
        run(["apt-get", "update", "-qq"])
        if not has_source_version(deb_version):
            die(f"apt has no source package postgresql-15={deb_version}")
    work = CACHE / "src-download"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log(f"apt-get source postgresql-15={deb_version}")
    run(["apt-get", "source", "--download-only", f"postgresql-15={deb_version}"], cwd=work)
    dsc = next(work.glob("*.dsc"))
    run(["dpkg-source", "-x", dsc.name, "pg"], cwd=work)
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(work / "pg" / "src" / "test" / "regress", tmp)
    tmp.rename(dest)
    shutil.rmtree(work, ignore_errors=True)
    return dest


def regress_lib(src, deb_version):
    """--dlpath: regress.so built from `src`, plus the server's autoinc.so and refint.so."""
    dest = CACHE / f"lib-{deb_version}"
    if (dest / "regress.so").exists():
        return dest
    dev = pkg_version("postgresql-server-dev-15")
    if dev != deb_version:
        if not is_root():
            die(f"postgresql-server-dev-15={deb_version} is needed to build regress.so")
        log(f"apt-get install postgresql-server-dev-15={deb_version}")
        run(["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600",
             f"postgresql-server-dev-15={deb_version}"])
    tmp = dest.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(src / "regress.c", tmp)
    (tmp / "Makefile").write_text(
        "MODULES = regress\n"
        f"PG_CONFIG = {PG_BIN / 'pg_config'}\n"
        "PGXS := $(shell $(PG_CONFIG) --pgxs)\n"
        "include $(PGXS)\n")
    log("building regress.so")
    run(NICE + ["make", "-s"], cwd=tmp)
    pkglib = Path(run([str(PG_BIN / "pg_config"), "--pkglibdir"]).strip())
    for name in ("autoinc.so", "refint.so"):
        (tmp / name).symlink_to(pkglib / name)
    tmp.rename(dest)
    return dest


def readable_by_all(path):
    """The server (OS user postgres) reads data/ and regress.so under the cache."""
    for d, dirs, files in os.walk(path):
        os.chmod(d, 0o755)
        for f in files:
            p = Path(d) / f
            if not p.is_symlink():
                os.chmod(p, os.stat(p).st_mode | 0o444)
    p = Path(path).resolve()
    while p != p.parent:
        os.chmod(p, os.stat(p).st_mode | 0o011)
        p = p.parent


# ---------------------------------------------------------------- one run


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(port, db, sql):
    return run(["/usr/bin/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                "-p", str(port), "-U", "postgres", "-d", db, "-c", sql])


def pooler_toml(mode, listen, pg_port, pool_size):
    return f"""# Written by integration/fidelity.py
[general]
listen_addr = "{listen}"
pool_mode = "{mode}"
workers = 1
default_pool_size = {pool_size}
query_wait_timeout = 600.0
slow_query_threshold = 0.0

[auth]
type = "trust"

[routing]
read_write_split = false

[[users]]
name = "postgres"

[databases.regression]
primary = "127.0.0.1:{pg_port}"

[databases.postgres]
primary = "127.0.0.1:{pg_port}"
"""


def start_pooler(mode, outdir, pg_port, pool_size):
    port = free_port()
    conf = outdir / "pgsluice.toml"
    conf.write_text(pooler_toml(mode, f"127.0.0.1:{port}", pg_port, pool_size))
    logf = open(outdir / "pgsluice.log", "w")
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(NICE + [str(REPO / "target" / "release" / "pgsluice"),
                                    "--config", str(conf)],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"pgsluice exited ({proc.returncode}); see {outdir / 'pgsluice.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    die("pgsluice did not listen within 15 s")


def start_cluster(workdir):
    out = run(NICE + ["bash", str(CLUSTER_SH), "start", str(workdir),
                      "--watch-pid", str(os.getpid())], stdin=subprocess.DEVNULL)
    m = re.search(r"^PRIMARY_PORT=(\d+)$", out, re.M)
    if not m:
        die(f"no PRIMARY_PORT from cluster.sh: {out!r}")
    return int(m.group(1))


def create_database(pg_port, extra):
    psql(pg_port, "postgres", 'CREATE DATABASE "regression" TEMPLATE=template0')
    settings = dict(DB_SETTINGS, **extra)
    sets = ";".join(f"ALTER DATABASE \"regression\" SET {k} TO '{v}'"
                    for k, v in settings.items())
    psql(pg_port, "postgres", sets)


def pg_regress_cmd(args, src, lib, outdir, port):
    cmd = NICE + [str(PG_REGRESS), "--use-existing", "--host=127.0.0.1", f"--port={port}",
                  "--user=postgres", "--dbname=regression", f"--bindir={PG_BIN}",
                  f"--inputdir={src}", f"--outputdir={outdir}", f"--dlpath={lib}"]
    if args.max_connections:
        cmd.append(f"--max-connections={args.max_connections}")
    if args.tests:
        return cmd + ["test_setup"] + [t for t in args.tests.split(",") if t != "test_setup"]
    schedule = src / "parallel_schedule"
    if args.schedule == "serial":
        # PostgreSQL 15 ships no serial_schedule: the parallel one, one test per line.
        schedule = outdir / "serial_schedule"
        tests = [t for line in (src / "parallel_schedule").read_text().splitlines()
                 if line.startswith("test:") for t in line.split()[1:]]
        schedule.write_text("".join(f"test: {t}\n" for t in tests))
    return cmd + [f"--schedule={schedule}"]


RESULT = re.compile(r"^(?:test\s+|\s+)(\S+)\s+\.\.\.\s+(ok|FAILED|failed \(ignored\))(.*)$")


def parse_results(text):
    """test -> 'ok' | 'FAILED' | 'ignored' | 'crashed'."""
    res = {}
    for line in text.splitlines():
        m = RESULT.match(line)
        if not m:
            continue
        verdict = {"ok": "ok", "FAILED": "FAILED"}.get(m.group(2), "ignored")
        if "exit code" in m.group(3) or "terminated" in m.group(3):
            verdict = "crashed"
        res[m.group(1)] = verdict
    return res


def split_diffs(outdir):
    """regression.diffs -> diffs/<test>.diff, one file per failed test."""
    diffs = outdir / "regression.diffs"
    ddir = outdir / "diffs"
    ddir.mkdir(exist_ok=True)
    if not diffs.exists():
        return
    cur, buf = None, []
    for line in diffs.read_text(errors="replace").splitlines(keepends=True):
        m = re.match(r"^diff \S+ (\S+)/expected/(\S+?)(?:_\d+)?\.out ", line)
        if m:
            if cur:
                (ddir / f"{cur}.diff").write_text("".join(buf))
            cur, buf = m.group(2), []
        buf.append(line)
    if cur:
        (ddir / f"{cur}.diff").write_text("".join(buf))


def run_mode(args, mode, label, src, lib):
    outdir = args.out / label
    shutil.rmtree(outdir, ignore_errors=True)
    (outdir / "results").mkdir(parents=True)
    if is_root():
        # The server writes COPY ... TO files into results/.
        shutil.chown(outdir / "results", "postgres", "postgres")
        readable_by_all(outdir)
    workdir = Path(f"/tmp/pgsluice-fidelity-cluster-{os.getpid()}-{label}")
    pg_port = start_cluster(workdir)
    pooler = None
    try:
        create_database(pg_port, args.db_set)
        port = pg_port
        if mode != "direct":
            pooler, port = start_pooler(mode, outdir, pg_port, args.pool_size)
        log(f"{label}: pg_regress against port {port} ({mode})")
        t0 = time.time()
        with open(outdir / "pg_regress.log", "w") as f:
            try:
                rc = subprocess.run(pg_regress_cmd(args, src, lib, outdir, port), stdout=f,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    timeout=args.timeout, cwd=outdir).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
                f.write(f"\nfidelity: pg_regress timed out after {args.timeout} s\n")
        log(f"{label}: pg_regress exit {rc} after {time.time() - t0:.0f} s")
    finally:
        if pooler:
            pooler.send_signal(signal.SIGINT)
            try:
                pooler.wait(10)
            except subprocess.TimeoutExpired:
                pooler.kill()
                pooler.wait()
        for logname in workdir.glob("*.log"):
            shutil.copy(logname, outdir / f"postgres-{logname.stem}.log")
        subprocess.run(["bash", str(CLUSTER_SH), "stop", str(workdir)],
                       capture_output=True, stdin=subprocess.DEVNULL)
    res = parse_results((outdir / "pg_regress.log").read_text(errors="replace"))
    if not res:
        log(f"{label}: no test results; see {outdir / 'pg_regress.log'}")
    (outdir / "results.tsv").write_text("".join(f"{t}\t{v}\n" for t, v in res.items()))
    split_diffs(outdir)
    return res


# ---------------------------------------------------------------- report


def report(args, labels, results):
    tests = []
    for label in labels:
        for t in results[label]:
            if t not in tests:
                tests.append(t)
    rows = [[t] + [results[lbl].get(t, "-") for lbl in labels] for t in tests]
    (args.out / "table.tsv").write_text(
        "\t".join(["test"] + labels) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    shown = rows if args.all else [r for r in rows if any(v != "ok" for v in r[1:])]
    widths = [max(len(x) for x in col) for col in zip(["test"] + labels, *shown)]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    print(line(["test"] + labels))
    print(line(["-" * w for w in widths]))
    for r in shown:
        print(line(r))
    fails = [str(sum(v != "ok" for v in results[lbl].values())) for lbl in labels]
    print(line(["failed"] + fails))
    print(line(["tests"] + [str(len(results[lbl])) for lbl in labels]))
    print(f"\nper-test verdicts: {args.out / 'table.tsv'}; diffs: {args.out}/<mode>/diffs/")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default="direct,session,transaction",
                    help="comma-separated, from direct, session, transaction, statement; "
                         "repeat one to run it again")
    ap.add_argument("--schedule", choices=["parallel", "serial"], default="parallel")
    ap.add_argument("--max-connections", type=int, default=0,
                    help="pg_regress --max-connections (0: a parallel group runs at once)")
    ap.add_argument("--tests", help="only test_setup and these tests (comma-separated)")
    ap.add_argument("--pool-size", type=int, default=30)
    ap.add_argument("--timeout", type=int, default=2400, help="seconds per pg_regress run")
    ap.add_argument("--db-set", action="append", default=[], metavar="NAME=VALUE",
                    help="another ALTER DATABASE regression SET (a control run: e.g. "
                         "datestyle='Postgres, MDY' makes RESET land on pg_regress's value)")
    ap.add_argument("--out", type=Path, default=REPO / "target" / "fidelity")
    ap.add_argument("--all", action="store_true", help="print every test, not only failures")
    ap.add_argument("--no-build", action="store_true", help="skip cargo build --release")
    args = ap.parse_args()
    modes = args.modes.split(",")
    args.db_set = dict(kv.split("=", 1) for kv in args.db_set)
    for m in modes:
        if m not in MODES:
            die(f"unknown mode {m!r} (one of {', '.join(MODES)})")

    deb, upstream = server_version()
    if not deb:
        die("postgresql-15 is not installed as a Debian package")
    regress_v = run([str(PG_REGRESS), "-V"]).strip()
    if f"PostgreSQL) {upstream} " not in f"{regress_v} ":
        die(f"{PG_REGRESS} is {regress_v!r}, the server {upstream}")
    CACHE.mkdir(parents=True, exist_ok=True)
    src = regress_sources(deb)
    lib = regress_lib(src, deb)
    if is_root():
        readable_by_all(CACHE)
    if any(m != "direct" for m in modes) and not args.no_build:
        log("cargo build --release")
        subprocess.run(NICE + ["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log(f"PostgreSQL {upstream} ({deb}); suite {src}; dlpath {lib}; output {args.out}")

    labels, results = [], {}
    for m in modes:
        n = modes[: len(labels)].count(m)
        label = m if n == 0 else f"{m}-{n + 1}"
        labels.append(label)
        results[label] = run_mode(args, m, label, src, lib)
    report(args, labels, results)


if __name__ == "__main__":
    main()
