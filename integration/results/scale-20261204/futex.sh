#!/bin/bash
# Callers of futex and write in pgsluice at workers = 2 (strace -f -k attached for a
# fixed number of transactions), 50 clients on a pool of 20, pgbench -S simple.
set -eu
cd /work/wt-scale
D=$(mktemp -u /tmp/pgsluice-scale-sys.XXXX)
eval "$(integration/cluster.sh start $D --watch-pid $$ | grep PRIMARY_PORT)"
W=$(mktemp -d /tmp/pgsluice-scale-sysw.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; integration/cluster.sh stop $D >/dev/null 2>&1; rm -rf "$W"; }
trap cleanup EXIT
PGHOST=127.0.0.1 PGPORT=$PRIMARY_PORT PGUSER=postgres pgbench -q -i -s 10 app >/dev/null 2>&1
for w in 2; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > $W/w$w.toml <<EOT
[general]
listen_addr = "127.0.0.1:$port"
workers = $w
pool_mode = "transaction"
max_client_conn = 1000
default_pool_size = 20
slow_query_threshold = 0

[auth]
type = "md5"

[[users]]
name = "postgres"
password = "bench_pw"

[databases.app]
dbname = "app"
primary = "127.0.0.1:$PRIMARY_PORT"
EOT
  env -u PGSLUICE_LOG /tmp/pgsluice-scale --config $W/w$w.toml > $W/w$w.log 2>&1 &
  pid=$!; pids+=($pid)
  sleep 1
  export PGPASSWORD=bench_pw
  pgbench -n -S -c 50 -j 2 -T 2 -h 127.0.0.1 -p $port -U postgres app >/dev/null 2>&1  # warm-up
  strace -f -q -k -e trace=futex,write -o $W/k.txt -p $pid &
  sp=$!
  sleep 1
  out=$(pgbench -n -S -c 50 -j 2 -t 100 -h 127.0.0.1 -p $port -U postgres app 2>&1)
  kill -INT $sp; wait $sp || true
  tx=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}' | cut -d/ -f1)
  echo "== workers = $w: strace -c -f over pgbench -n -S -c 50 -j 2 -t 100 ($tx transactions; counts per transaction in the last column)"
  python3 /tmp/scale/futex_sum.py $W/k.txt $tx
  kill $pid; wait $pid 2>/dev/null || true
done
