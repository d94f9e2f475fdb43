#!/bin/bash
# Issue 14 scale-out measurements, run one after the other (never two at once).
set -u
cd /work/wt-scale
OUT=integration/results/scale-20261204
W2=/tmp/scale/pgsluice-w2
B=/tmp/pgsluice-scale
echo "start $(date -u +%FT%TZ)" > $OUT/timeline.txt
# 1. This machine's cost of a shared atomic and a shared mutex (2 pinned threads).
/tmp/scale/atomics > $OUT/atomics.txt 2>&1
echo "atomics done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
# 2. 50 clients on a pool of 20 (checkouts wait): workers 1 (target pgsluice) and
#    workers 2 (target pgsluice-baseline = the same binary through $W2), same rounds.
nice -n 5 python3 integration/bench.py --no-build --binary $B --workers 1 \
  --baseline-binary $W2 --targets direct,pgbouncer,pgsluice,pgsluice-baseline \
  --modes simple,extended --clients 50 --duration 10 --rounds 3 \
  > $OUT/bench-c50.stdout 2> $OUT/bench-c50.stderr
echo "bench c50 done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
# 3. 20 clients on a pool of 20 (no checkout waits), simple mode.
nice -n 5 python3 integration/bench.py --no-build --binary $B --workers 1 \
  --baseline-binary $W2 --targets pgbouncer,pgsluice,pgsluice-baseline \
  --modes simple --clients 20 --pool-size 20 --duration 10 --rounds 3 \
  > $OUT/bench-c20.stdout 2> $OUT/bench-c20.stderr
echo "bench c20 done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
# 4. Instructions per transaction (callgrind) at workers 1 and 2.
for w in 1 2; do
  nice -n 5 python3 integration/instructions.py --binary $B --clients 50 --pool-size 20 \
    --short 40 --long 440 --reps 2 --general "slow_query_threshold = 0
workers = $w" > $OUT/instructions-w$w.stdout 2> $OUT/instructions-w$w.stderr
  echo "instructions w$w done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
done
echo "end $(date -u +%FT%TZ)" >> $OUT/timeline.txt
