import os, re, subprocess, sys, time, urllib.request
sys.path.insert(0, "/work/main/integration")
import bench as B
binary = sys.argv[1]; clients = [int(c) for c in sys.argv[2].split(",")]; mode = sys.argv[3]
sys.argv = ["bench.py", "--no-build", "--binary", binary, "--targets", "pgsluice", "--modes", mode]
args = B.parse_args(); bench = B.Bench(args)
try:
    bench.start_cluster()
    port, hport = B.pick_port(), B.pick_port()
    d = os.path.join(bench.work, "p"); os.mkdir(d)
    conf = os.path.join(d, "p.toml")
    open(conf, "w").write(f"""[general]
listen_addr = "127.0.0.1:{port}"
workers = 1
max_client_conn = 10000
default_pool_size = 20
[admin]
http_listen_addr = "127.0.0.1:{hport}"
[auth]
type = "md5"
[[users]]
name = "{B.USER}"
password = "{B.PASSWORD}"
[databases.{B.DATABASE}]
dbname = "{B.DATABASE}"
primary = "127.0.0.1:{bench.primary_port}"
""")
    p = subprocess.Popen([binary, "--config", conf], stdout=open(os.path.join(d, "log"), "w"), stderr=subprocess.STDOUT)
    B.wait_listening(port, p, "p")
    def metric(name):
        t = urllib.request.urlopen(f"http://127.0.0.1:{hport}/metrics").read().decode()
        m = re.search(rf"^{name}(?:{{[^}}]*}})? ([\d.e+]+)$", t, re.M)
        return float(m.group(1)) if m else None
    for c in clients:
        k0 = metric("pgsluice_client_parks_total")
        cmd = ["pgbench", "-n", "-S", "-M", mode, "-c", str(c), "-j", "2", "-T", "8", "-h", "127.0.0.1", "-p", str(port), "-U", B.USER, B.DATABASE]
        out = subprocess.run(cmd, env=bench.pg_env(), capture_output=True, text=True).stdout
        n = int(re.search(r"actually processed: (\d+)", out).group(1))
        k1 = metric("pgsluice_client_parks_total")
        print(c, "txns", n, "parks", k1 - k0, "parks per txn", round((k1 - k0) / n, 4), flush=True)
    p.terminate(); p.wait()
finally:
    bench.cleanup()
