#!/usr/bin/env bash
# psql's `EXECUTE test \gdesc` through pgsluice in transaction mode while two pgbench
# clients keep the pool's three servers changing hands (issue 17, C8/C12): each of N psql
# runs prepares its own statement and describes it; prints how many printed the columns.
#
#   integration/fidelity/gdesc_psql.sh PGSLUICE_BINARY PRIMARY_PORT LISTEN_PORT [N]
#
# PRIMARY_PORT: a primary from `integration/cluster.sh start DIR` (trust for postgres).
# Load goes to 127.0.0.1 only and stops after 60 s at most.
set -euo pipefail
BIN=$1; PG=$2; LP=$3; N=${4:-40}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DIR=$(mktemp -d)
trap 'kill "${LOAD:-}" "${POOLER:-}" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat > "$DIR/pgsluice.toml" <<EOT
[general]
listen_addr = "127.0.0.1:$LP"
pool_mode = "transaction"
workers = 1
default_pool_size = 3
[auth]
type = "trust"
[[users]]
name = "postgres"
[databases.postgres]
primary = "127.0.0.1:$PG"
EOT
"$BIN" --config "$DIR/pgsluice.toml" > "$DIR/pgsluice.log" 2>&1 &
POOLER=$!
sleep 1
echo "SELECT 1;" > "$DIR/load.sql"
"$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$LP" -U postgres -c 2 -T 60 -f "$DIR/load.sql" postgres \
    > "$DIR/pgbench.log" 2>&1 &
LOAD=$!
good=0; bad=0
for i in $(seq 1 "$N"); do
    printf 'PREPARE test AS SELECT %d AS first, 2 AS second;\nEXECUTE test \\gdesc\n' "$i" > "$DIR/q.sql"
    out=$("$PG_BIN/psql" -X -h 127.0.0.1 -p "$LP" -U postgres postgres -f "$DIR/q.sql" 2>&1)
    if grep -q "second | integer" <<< "$out"; then
        good=$((good + 1))
    else
        bad=$((bad + 1))
        tail -1 <<< "$out"
    fi
done
echo "described: $good, not described: $bad"
