#!/bin/bash
for i in 1 2 3 4 5 6 7 8; do
  ( cd /work/main && timeout 200 target/release/deps/dba_listen-da7036e691d99cd2 five_hundred > /tmp/adhoc/s37/hunt-$i.log 2>&1 ) &
  T=$!
  for s in $(seq 1 40); do sleep 1; kill -0 $T 2>/dev/null || break; done
  if kill -0 $T 2>/dev/null; then
    P=$(pgrep -f "target/release/pgsluice --config" | head -1)
    echo "run $i hung; pgsluice pid $P"
    top -b -n1 -H -p $P | head -12
    gdb -p $P -batch -ex "thread apply all bt 30" > /tmp/adhoc/s37/hunt-gdb.txt 2>&1
    echo "gdb done"
    exit 0
  fi
  echo "run $i ok"
done
