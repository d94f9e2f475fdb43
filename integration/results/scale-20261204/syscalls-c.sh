#!/bin/bash
# Syscalls per transaction of pgsluice at workers = 1 and 2 (strace -c -f attached for a
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
for w in 1 2; do
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
  pgbench -n -S -c ${C:-50} -j 2 -T 2 -h 127.0.0.1 -p $port -U postgres app >/dev/null 2>&1  # warm-up
  strace -c -f -q -o $W/strace-w$w.txt -p $pid &
  sp=$!
  sleep 1
  out=$(pgbench -n -S -c ${C:-50} -j 2 -t 400 -h 127.0.0.1 -p $port -U postgres app 2>&1)
  kill -INT $sp; wait $sp || true
  tx=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}' | cut -d/ -f1)
  echo "== workers = $w: strace -c -f over pgbench -n -S -c ${C:-50} -j 2 -t 400 ($tx transactions; counts per transaction in the last column)"
  awk -v tx=$tx 'NR>2 && $0 !~ /^-/ && NF>=5 { name=$NF; calls=($4 ~ /^[0-9]+$/ && NF>=6) ? $4 : $4; printf "%-16s %9s calls  %6.2f per txn\n", name, calls, calls/tx }' $W/strace-w$w.txt | sort -k4 -nr | head -12
  kill $pid; wait $pid 2>/dev/null || true
done
