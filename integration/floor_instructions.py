#!/usr/bin/env python3
"""User-space instructions per transaction of every pooler and of the floor relay, by callgrind.

    python3 integration/floor_instructions.py [--binary PATH] [--pgbouncer-new PATH]
                                              [--modes simple,extended] [--clients N]

integration/instructions.py's method (a short and a long `pgbench -n -S` run under
`valgrind --tool=callgrind`; the difference of their instructions over the difference of
their transactions: start-up and logins cancel out) applied to PgBouncer 1.18, the newer
PgBouncer when given (with max_prepared_statements), pgsluice (slow query log off: under
valgrind every wait passes its threshold) and the floor relay (examples/floor_relay/) on
mio, as one tokio task and on tokio with a task per client, all in transaction mode with a
pool of 20 on one throwaway cluster.
Instructions do not depend on the machine's load; they leave out the kernel's work (see
integration/floor.py for CPU time). The table goes to
integration/results/floor-instructions-<UTC timestamp>/summary.md.
"""

import argparse
import datetime
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import instructions as I  # noqa: E402

ROOT = I.ROOT
FLOOR = os.path.join(ROOT, "target", "release", "examples", "floor_relay")
POOL = 20


def as_postgres(path):
    """PgBouncer refuses to run as root: its files go to the postgres user."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files + [""]:
            shutil.chown(os.path.join(root, name), "postgres", "postgres")


def count(work, target, binary, primary, mode, clients, txns):
    """Instructions of one process of `target` serving `clients` x `txns` transactions."""
    port = I.free_port()
    d = tempfile.mkdtemp(prefix=f"{target}-", dir=work)
    out = os.path.join(d, "callgrind.out")
    kw = {}
    if target.startswith("pgbouncer"):
        extra = "max_prepared_statements = 100\n" if target == "pgbouncer-new" else ""
        cmd = [binary, B.write_pgbouncer_config(d, port, primary, POOL, 1000, extra)]
        as_postgres(d)
        if os.geteuid() == 0:
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
    elif target.startswith("floor"):
        cmd = [binary, "--listen", f"127.0.0.1:{port}", "--server", f"127.0.0.1:{primary}",
               "--database", "app", "--servers", str(POOL),
               "--runtime", target.removeprefix("floor-") if "-" in target else "mio"]
    else:
        conf = os.path.join(d, "pgsluice.toml")
        with open(conf, "w") as f:
            f.write(I.config(port, primary, "slow_query_threshold = 0\nmax_client_conn = 1000",
                             "", POOL))
        cmd = [binary, "--config", conf]
    # PgBouncer shuts down on SIGINT by its own handler; the others end on SIGTERM (a
    # background shell may have left SIGINT ignored for them).
    stop = signal.SIGINT if target.startswith("pgbouncer") else signal.SIGTERM
    return I.callgrind_count(cmd, port, out, os.path.join(d, "stderr.log"), clients, txns,
                             mode, stop=stop, cwd=d, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pgsluice"))
    ap.add_argument("--pgbouncer", default="/usr/sbin/pgbouncer")
    ap.add_argument("--pgbouncer-new", default=None)
    ap.add_argument("--floor-binary", default=FLOOR)
    ap.add_argument("--modes", default="simple,extended")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--short", type=int, default=40)
    ap.add_argument("--long", type=int, default=640)
    args = ap.parse_args()
    targets = [("pgbouncer", args.pgbouncer)]
    if args.pgbouncer_new:
        targets.append(("pgbouncer-new", args.pgbouncer_new))
    targets += [("pgsluice", args.binary), ("floor", args.floor_binary),
                ("floor-nested", args.floor_binary), ("floor-tokio", args.floor_binary),
                ("floor-core", args.floor_binary), ("floor-core-nostats", args.floor_binary)]
    for name, binary in targets:
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{name}: no {binary}")
    work = tempfile.mkdtemp(prefix="floor-instr.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    modes = args.modes.split(",")
    per = {}
    try:
        primary = I.start_cluster(cluster)
        delta = args.clients * (args.long - args.short)
        for mode in modes:
            for name, binary in targets:
                a = count(work, name, binary, primary, mode, args.clients, args.short)
                b = count(work, name, binary, primary, mode, args.clients, args.long)
                per[(mode, name)] = (b - a) / delta
                I.log(f"{mode} {name}: {per[(mode, name)]:.0f} instructions/transaction")
    finally:
        subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    names = {"pgbouncer": "PgBouncer (Debian's)", "pgbouncer-new": "PgBouncer (newer)",
             "pgsluice": "pgsluice", "floor": "floor relay, mio",
             "floor-nested": "floor relay, mio loop as one tokio task",
             "floor-tokio": "floor relay, tokio task per client",
             "floor-core": "floor relay, mio, with pgsluice's session core",
             "floor-core-nostats": "floor relay, mio, with pgsluice's session core, "
                                   "statistics off"}
    cmd = "python3 " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    text = [f"`{cmd}`: pgbench -n -S -c {args.clients} -t {args.short} vs -t {args.long}, "
            f"transaction mode, pool size {POOL}\n",
            "| pooler | " + " | ".join(f"{m}: instructions/txn" for m in modes) + " |",
            "|---|" + "--:|" * len(modes)]
    for name, _ in targets:
        text.append(f"| {names[name]} | "
                    + " | ".join(f"{per[(m, name)]:,.0f}" for m in modes) + " |")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = os.path.join(ROOT, "integration", "results", f"floor-instructions-{stamp}")
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
