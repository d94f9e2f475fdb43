#!/bin/bash
set -u
cd /work/wt-scale
OUT=integration/results/scale-20261204
echo "more start $(date -u +%FT%TZ)" >> $OUT/timeline.txt
/tmp/scale/touch > $OUT/touch.txt 2>&1
/tmp/scale/atomics > $OUT/atomics-2.txt 2>&1
echo "touch/atomics done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
/tmp/scale/syscalls.sh > $OUT/syscalls.txt 2> $OUT/syscalls.stderr
echo "syscalls done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
nice -n 5 /tmp/scale/pgcpu.sh > $OUT/postgres-cpu.txt 2> $OUT/postgres-cpu.stderr
echo "pgcpu done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
for w in 1 2; do
  nice -n 5 python3 integration/instructions.py --binary /tmp/pgsluice-scale --mode extended --clients 50 --pool-size 20 \
    --short 40 --long 440 --reps 2 --general "slow_query_threshold = 0
workers = $w" > $OUT/instructions-extended-w$w.stdout 2> $OUT/instructions-extended-w$w.stderr
  echo "instructions extended w$w done $(date -u +%FT%TZ)" >> $OUT/timeline.txt
done
