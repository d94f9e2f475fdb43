#!/usr/bin/env python3
"""Per-connection callgrind counts: pgbench -n -S -C (a new connection per transaction),
10 clients, SHORT and LONG transactions each; per connection = (long - short) / (10 * (LONG - SHORT)).
Keeps the callgrind files. usage: python3 integration/conn_instructions.py OUTDIR BINARY [BINARY...] (each a release build; with line tables, CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, callgrind_annotate names source lines)"""
import os, re, shutil, signal, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions as I

SHORT, LONG, CLIENTS = 20, 120, 10

def count(work, binary, conf_text, txns):
    port = I.free_port()
    conf = os.path.join(work, f"pgsluice-{port}.toml")
    open(conf, "w").write(conf_text.replace("{PORT}", str(port)))
    out = os.path.join(work, f"callgrind-{port}.out")
    logf = open(os.path.join(work, f"pgsluice-{port}.log"), "w")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "--config", conf],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        I.wait_port(port, proc)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = "bench_pw"
        p = subprocess.run(["pgbench", "-n", "-S", "-C", "-c", str(CLIENTS), "-j", "2", "-t", str(txns),
                            "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "app"], env=env, text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{p.stdout}{p.stderr}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        logf.close()
    m = re.search(r"^(?:summary|totals): (\d+)", open(out).read(), re.M)
    return int(m.group(1)), out

def main():
    outdir, bins = sys.argv[1], sys.argv[2:]
    os.makedirs(outdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pgsluice-conn.")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "cluster")
    try:
        p = subprocess.run([I.CLUSTER_SH, "start", cluster, "--watch-pid", str(os.getpid())], text=True, capture_output=True)
        if p.returncode != 0:
            raise SystemExit(p.stderr)
        primary = int(re.search(r"^PRIMARY_PORT=(\d+)", p.stdout, re.M).group(1))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run(["pgbench", "-i", "-s", "1", "-h", "127.0.0.1", "-p", str(primary), "-U", "postgres", "app"], env=env, check=True, capture_output=True)
        text = I.config("{PORT}", primary, "slow_query_threshold = 0", "", 20)
        for b in bins:
            name = os.path.basename(b)
            res = []
            for t in (SHORT, LONG):
                n, out = count(work, b, text, t)
                shutil.copy(out, os.path.join(outdir, f"{name}-conn-{t}.out"))
                res.append(n)
            per = (res[1] - res[0]) / (CLIENTS * (LONG - SHORT))
            line = f"| {name} | conn | {res[0]} | {res[1]} | {per:,.0f} |"
            print(line, flush=True)
            open(os.path.join(outdir, "totals.md"), "a").write(line + "\n")
    finally:
        subprocess.run([I.CLUSTER_SH, "stop", cluster], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

main()
