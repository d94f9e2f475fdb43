#!/bin/bash
# PostgreSQL's own CPU per pgbench -S transaction (direct, no pooler), this machine:
# utime+stime of the primary's postmaster and all its children over one run.
set -eu
cd /work/wt-scale
D=$(mktemp -u /tmp/pgsluice-scale-pgcpu.XXXX)
eval "$(integration/cluster.sh start $D --watch-pid $$ | grep PRIMARY_PORT)"
trap 'integration/cluster.sh stop $D >/dev/null 2>&1' EXIT
export PGHOST=127.0.0.1 PGPORT=$PRIMARY_PORT PGUSER=postgres
pgbench -q -i -s 10 app >/dev/null 2>&1
PM=$(head -1 $D/primary/postmaster.pid)
cpu() { local t=0; for p in $PM $(pgrep -P $PM); do
  if [ -r /proc/$p/stat ]; then s=$(sed 's/.*) //' /proc/$p/stat); set -- $s; t=$((t + ${12} + ${13})); fi; done
  # children that exited during the run are counted in the postmaster's cutime/cstime
  s=$(sed 's/.*) //' /proc/$PM/stat); set -- $s; echo $((t + ${14} + ${15})); }
for r in 1 2 3; do
  pgbench -n -S -M simple -c 50 -j 2 -T 3 app >/dev/null 2>&1   # warm-up, connections made
  c0=$(cpu)
  out=$(pgbench -n -S -M simple -c 50 -j 2 -T 10 app 2>&1)
  c1=$(cpu)
  tx=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}' | cut -d/ -f1)
  tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
  echo "round $r: direct pgbench -n -S -M simple -c 50 -j 2 -T 10: $tx transactions, tps $tps, postgres CPU $(( (c1 - c0) ))/$(getconf CLK_TCK) s = $(echo "scale=1; ($c1 - $c0) * 1000000 / $(getconf CLK_TCK) / $tx" | bc) us/txn"
done
