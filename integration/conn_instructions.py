#!/usr/bin/env python3
"""User-space instructions per new connection (issue 14, connect path): callgrind over
`pgbench -n -S -C` (a new connection per transaction), 10 clients, SHORT and LONG
transactions each; per connection = (long - short) / (10 * (LONG - SHORT)).

    python3 integration/conn_instructions.py OUTDIR BINARY [BINARY...]

Each BINARY a release build (with `CARGO_PROFILE_RELEASE_DEBUG=line-tables-only`,
callgrind_annotate names source lines). Keeps the callgrind files in OUTDIR
(NAME-conn-SHORT.out, NAME-conn-LONG.out) and appends a row per binary to OUTDIR/totals.md.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I  # noqa: E402 (cluster, config and callgrind helpers)

SHORT, LONG, CLIENTS = 20, 120, 10


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    outdir, bins = sys.argv[1], sys.argv[2:]
    os.makedirs(outdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pgsluice-conn.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    try:
        p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())],
                           text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary),
                        "-U", "postgres", "app"], env=env, check=True, capture_output=True)
        text = I.config("{PORT}", primary, "slow_query_threshold = 0", "", 20)
        for b in bins:
            name = os.path.basename(b)
            short, long_ = (I.count(work, b, text, CLIENTS, t, extra=["-C"],
                                    keep=os.path.join(outdir, f"{name}-conn-{t}.out"))
                            for t in (SHORT, LONG))
            per = (long_ - short) / (CLIENTS * (LONG - SHORT))
            line = f"| {name} | conn | {short} | {long_} | {per:,.0f} |"
            print(line, flush=True)
            with open(os.path.join(outdir, "totals.md"), "a") as f:
                f.write(line + "\n")
    finally:
        subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


main()
