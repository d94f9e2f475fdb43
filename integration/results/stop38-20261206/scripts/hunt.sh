#!/bin/bash
# Runs tests/dba_listen.rs five_hundred... up to N times (argument, default 8) with a 45 s
# watchdog; on a hang, top and five gdb samples of the pgsluice process. The test binary
# below is the one `CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --tests`
# made on 2026-12-06 (its hash changes with the build: take yours from target/release/deps).
for i in $(seq 1 ${1:-8}); do
  ( cd /work/main && timeout 200 target/release/deps/dba_listen-a0cc53c10cfad464 five_hundred > /tmp/adhoc/s38/hunt-$i.log 2>&1 ) &
  T=$!
  for s in $(seq 1 45); do sleep 1; kill -0 $T 2>/dev/null || break; done
  if kill -0 $T 2>/dev/null; then
    P=$(pgrep -f "target/release/pgsluice --config" | head -1)
    echo "run $i hung; pgsluice pid $P"
    top -b -n1 -H -p $P | head -12
    for k in 1 2 3 4 5; do gdb -p $P -batch -ex "thread apply all bt 30" > /tmp/adhoc/s38/hunt-gdb-$k.txt 2>&1; sleep 0.3; done
    echo "gdb done"
    exit 0
  fi
  echo "run $i ok $(grep -c 'test result: ok' /tmp/adhoc/s38/hunt-$i.log)"
done
