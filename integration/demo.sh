#!/usr/bin/env bash
# pgsluice demo: builds pgsluice, starts a throwaway PostgreSQL primary +
# 1 streaming replica, and runs pgsluice in front of them (transaction
# pooling, SCRAM auth, user app / app_pw, database app) on 127.0.0.1:6432
# or the first free port above. Ctrl-C stops pgsluice and removes the cluster.
#
#   integration/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# Install what is missing (PostgreSQL, psql, Python packages) when run as root.
"$ROOT/integration/deps.sh" || true
missing=()
command -v cargo >/dev/null || missing+=("cargo (Rust toolchain: https://rustup.rs)")
for b in initdb pg_ctl pg_basebackup postgres; do
    [[ -x $PG_BIN/$b ]] || missing+=("$PG_BIN/$b (apt-get install postgresql)")
done
command -v psql >/dev/null || missing+=("psql (apt-get install postgresql-client)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
if ((${#missing[@]})); then
    echo "demo.sh: missing tools:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
if [[ $(id -u) -eq 0 ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "demo.sh: running as root needs the 'postgres' OS user (PostgreSQL refuses to run as root)" >&2
    exit 1
fi

echo "==> cargo build --release" >&2
(cd "$ROOT" && cargo build --release)
TARGET=${CARGO_TARGET_DIR:-target}
[[ $TARGET == /* ]] || TARGET=$ROOT/$TARGET
BIN=$TARGET/release/pgsluice

WORK=$(mktemp -d /tmp/pgsluice-demo.XXXXXX)
POOLER_PID=""
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $POOLER_PID ]] && kill -0 "$POOLER_PID" 2>/dev/null; then
        kill -TERM "$POOLER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$POOLER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$POOLER_PID" 2>/dev/null || true
    fi
    "$ROOT/integration/cluster.sh" stop "$WORK/cluster" 2>/dev/null || true
    rm -rf "$WORK"
    echo "demo.sh: stopped pgsluice and the cluster" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> starting PostgreSQL (primary + 1 replica) in $WORK/cluster" >&2
"$ROOT/integration/cluster.sh" start "$WORK/cluster" --replicas 1 --watch-pid $$ >"$WORK/cluster.env"
# shellcheck disable=SC1091
source "$WORK/cluster.env"
# The throwaway cluster commits with synchronous_commit = off (quick tests): WAL then
# reaches the replica at the WAL writer's next flush, up to 200 ms later, longer than a
# read-your-writes probe waits (ryw_max_wait, 5 ms), so a session's read after its own
# write would always go to the primary. The demo's database commits synchronously, as
# a production primary does: such a read can be served by the replica.
psql -X -q -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d app \
    -c "ALTER DATABASE app SET synchronous_commit = on" >/dev/null

port_free() {
    python3 -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
PORT=6432
until port_free "$PORT"; do
    PORT=$((PORT + 1))
done

CONFIG=$WORK/pgsluice.toml
cat >"$CONFIG" <<EOF
[general]
listen_addr = "127.0.0.1:$PORT"
pool_mode = "transaction"
default_pool_size = 20

[auth]
type = "scram-sha-256"
# The demo's one user may also use the admin console (database "pgsluice").
admin_users = ["app"]

[[users]]
name = "app"
password = "app_pw"

[databases.app]
dbname = "app"
primary = "127.0.0.1:$PRIMARY_PORT"
replicas = [$(sep=""; for p in $REPLICA_PORTS; do printf '%s"127.0.0.1:%s"' "$sep" "$p"; sep=", "; done)]
EOF

echo "==> starting pgsluice: $BIN --config $CONFIG" >&2
"$BIN" --config "$CONFIG" &
POOLER_PID=$!

ready=0
for _ in $(seq 100); do
    kill -0 "$POOLER_PID" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.1
done
if ((!ready)); then
    echo "demo.sh: pgsluice did not start listening on 127.0.0.1:$PORT" >&2
    exit 1
fi

URL="postgres://app:app_pw@127.0.0.1:$PORT/app"
cat <<EOF

pgsluice is running (PostgreSQL primary on port $PRIMARY_PORT, replica on $REPLICA_PORTS).

  URL:   $URL
  try:   psql "$URL" -c 'SELECT inet_server_port(), pg_is_in_recovery()'
             (a read: served by the replica)
         psql "$URL" -c 'CREATE TABLE IF NOT EXISTS demo (x int)' -c 'INSERT INTO demo VALUES (1)' -c 'SELECT inet_server_port(), count(*) FROM demo'
             (writes go to the primary; the SELECT sees the INSERT because it runs in the
              same session: read-your-writes is per session. It runs on the replica
              once that has replayed the INSERT (pgsluice asks it, waiting up to 5 ms),
              else on the primary. Another connection sees it
              once a replica has replayed it, or at once with the causal token: see
              "Causal token across connections" in README.md)
         psql "postgres://app:app_pw@127.0.0.1:$PORT/pgsluice" -c 'SHOW NODES'
             (the admin console: also SHOW POOLS, SHOW STATS, SHOW LATENCY, SHOW HELP)

Config: $CONFIG. Press Ctrl-C to stop pgsluice and remove the cluster.

EOF

set +e
wait "$POOLER_PID"
rc=$?
set -e
POOLER_PID=""
echo "demo.sh: pgsluice exited with status $rc" >&2
exit "$rc"
