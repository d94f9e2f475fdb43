#!/usr/bin/env bash
# Throwaway PostgreSQL clusters (one primary + N streaming replicas) for
# pgsluice's integration tests, demo and benchmarks.
#
#   cluster.sh start DIR [--replicas N] [--delay SECONDS] [--watch-pid PID]
#       Creates DIR, starts a primary and N streaming replicas on free ports of
#       127.0.0.1, waits until every node accepts connections and every
#       replica is streaming, then prints (and writes to DIR/env):
#           PRIMARY_PORT=54321
#           REPLICA_PORTS="54322 54323"
#       --delay S      recovery_min_apply_delay = 'Ss' on the LAST replica
#       --watch-pid P  detached watchdog: stop the cluster and remove DIR once
#                      process P exits (so a killed test never leaks postgres)
#   cluster.sh stop DIR              stop every node (immediate) and remove DIR
#   cluster.sh stop-node DIR NAME [MODE]   pg_ctl stop -m MODE (default immediate)
#   cluster.sh start-node DIR NAME
#   cluster.sh promote DIR NAME      NAME = primary, replica1, replica2, ...
#
# Nodes live in DIR/<name> (data directory), log to DIR/<name>.log and put
# their unix sockets in DIR. initdb runs once into a cached template
# (/tmp/pgsluice-pgtemplate-15) that every new primary is copied from.
#
# Template roles (every role may create tables in app's public schema):
#   postgres   superuser, no password
#   app        password app_pw, stored as SCRAM-SHA-256; owns database app
#   md5user    password md5_pw, stored as md5
#   plainuser  password plain_pw (stored as SCRAM; pg_hba asks for cleartext)
# pg_hba.conf, line by line:
#   local all all trust | host all md5user 127.0.0.1/32 md5
#   host all app 127.0.0.1/32 scram-sha-256 | host all plainuser 127.0.0.1/32 password
#   host all all 127.0.0.1/32 trust | host replication all 127.0.0.1/32 trust
#
# Data directories live on tmpfs when /dev/shm has room (file creation on
# the disk here is ~10x slower), as DIR/<name> -> /dev/shm/pgsluice-data.X/<name>;
# `stop` removes both.
#
# Environment (no PGSLUICE_* names: pgsluice reads those as config keys):
#   PG_BIN               default /usr/lib/postgresql/15/bin
#   CLUSTER_PG_TEMPLATE  template directory
#   CLUSTER_DATA_ROOT    where data directories go: "auto" (default) = /dev/shm
#                        if it has room, "" = inside DIR
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
# Bump whenever the template's contents (settings, roles, hba) change: a
# template with another stamp is rebuilt.
TEMPLATE_STAMP="pgsluice-template-v2"
# Ports picked recently by cluster.sh (and the Rust test harness) are
# reserved here as empty directories, so concurrent runs don't pick the same
# free port between asking the kernel and postgres binding it.
PORT_RESERVATIONS=/tmp/pgsluice-ports

SELF=$(readlink -f "${BASH_SOURCE[0]}")
# The system python starts fast; a pyenv shim on PATH takes ~0.2 s.
if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
PG_MAJOR=$(basename "$(dirname "$PG_BIN")")

# libpq environment from the caller must not redirect our own connections.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGOPTIONS PGSSLMODE PGDATA

if [[ $(id -u) -eq 0 ]]; then
    AS_ROOT=1
    TEMPLATE=${CLUSTER_PG_TEMPLATE:-/tmp/pgsluice-pgtemplate-$PG_MAJOR}
else
    AS_ROOT=0
    TEMPLATE=${CLUSTER_PG_TEMPLATE:-/tmp/pgsluice-pgtemplate-$PG_MAJOR-$(id -u)}
fi

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$SELF" >&2
    exit 2
}

# Run a PostgreSQL binary; as user postgres when we are root (postgres
# refuses to run as root), from / so the caller's cwd doesn't matter.
pg() {
    local bin=$1
    shift
    if ((AS_ROOT)); then
        (cd / && runuser -u postgres -- "$PG_BIN/$bin" "$@")
    else
        "$PG_BIN/$bin" "$@"
    fi
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Give DIR to the postgres user and make sure it can reach DIR (root only).
prepare_dir_for_postgres() {
    local dir=$1 d mode
    ((AS_ROOT)) || return 0
    chown postgres: "$dir"
    chmod 0755 "$dir"
    d=$(dirname "$dir")
    while [[ $d != / ]]; do
        mode=$(stat -c %A "$d")
        case ${mode: -1} in
            x | t) ;;
            *) chmod o+x "$d" ;;
        esac
        d=$(dirname "$d")
    done
}

# Print N distinct free TCP ports of 127.0.0.1 (space separated).
pick_ports() {
    "$PYTHON" - "$1" "$PORT_RESERVATIONS" <<'PY'
import os, socket, sys, time
n, resdir = int(sys.argv[1]), sys.argv[2]
FRESH = 120  # seconds a reservation protects a port
try:
    os.mkdir(resdir)
    os.chmod(resdir, 0o1777)
except FileExistsError:
    pass
now = time.time()
try:
    for e in os.scandir(resdir):  # forget old reservations
        try:
            if now - e.stat().st_mtime > 600:
                os.rmdir(e.path)
        except OSError:
            pass
except OSError:
    pass
held, ports = [], []
for _ in range(500):
    if len(ports) == n:
        break
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)  # keep it bound so this call never returns a port twice
    port = s.getsockname()[1]
    path = os.path.join(resdir, str(port))
    try:
        os.mkdir(path)
        ports.append(port)
        continue
    except FileExistsError:
        pass
    try:
        if time.time() - os.stat(path).st_mtime > FRESH:
            os.rmdir(path)
            os.mkdir(path)
            ports.append(port)
    except OSError:
        pass
for s in held:
    s.close()
if len(ports) != n:
    sys.exit("could not find %d free ports" % n)
print(" ".join(map(str, ports)))
PY
}

# ---------------------------------------------------------------- template

template_ok() {
    [[ -f $TEMPLATE/stamp && $(<"$TEMPLATE/stamp") == "$TEMPLATE_STAMP" && -f $TEMPLATE/data/PG_VERSION ]]
}

build_template() {
    local tmp="$TEMPLATE.build" t0
    t0=$(now)
    echo "cluster.sh: building template $TEMPLATE (once)" >&2
    rm -rf "$tmp" "$TEMPLATE"
    mkdir -p "$tmp"
    prepare_dir_for_postgres "$tmp"
    if ! pg initdb -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C \
        --wal-segsize=1 --no-sync --no-instructions >"$tmp/initdb.log" 2>&1; then
        cat "$tmp/initdb.log" >&2
        die "initdb failed"
    fi
    cat >>"$tmp/data/postgresql.conf" <<'CONF'

# ---- cluster.sh: fast throwaway clusters
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
wal_keep_size = 64MB
min_wal_size = 8MB
max_wal_size = 256MB
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
log_min_messages = warning
CONF
    cat >"$tmp/data/pg_hba.conf" <<'HBA'
local all all trust
host all md5user 127.0.0.1/32 md5
host all app 127.0.0.1/32 scram-sha-256
host all plainuser 127.0.0.1/32 password
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
HBA
    if ! pg pg_ctl start -D "$tmp/data" -l "$tmp/build.log" -w -t 60 -s \
        -o "-c listen_addresses='' -c unix_socket_directories='$tmp' -p 5432"; then
        cat "$tmp/build.log" >&2
        die "could not start the template server"
    fi
    if ! pg psql -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p 5432 -U postgres -d postgres <<'SQL'; then
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'app_pw';
CREATE ROLE plainuser LOGIN PASSWORD 'plain_pw';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5_pw';
CREATE DATABASE app OWNER app;
\connect app
-- let every test role create tables in app (public is owned by app)
GRANT CREATE ON SCHEMA public TO PUBLIC;
SQL
        pg pg_ctl stop -D "$tmp/data" -m immediate -s || true
        die "template SQL failed"
    fi
    pg pg_ctl stop -D "$tmp/data" -m fast -w -s
    rm -f "$tmp/data/postmaster.opts"
    echo "$TEMPLATE_STAMP" >"$tmp/stamp"
    mv "$tmp" "$TEMPLATE"
    echo "cluster.sh: template built in $(since "$t0")s" >&2
}

# Copy the template's data directory to $1 (building the template first if
# needed). Holds a shared lock while copying, an exclusive one while building.
copy_template() {
    local dest=$1
    exec 9>>"$TEMPLATE.lock"
    flock -s 9
    if ! template_ok; then
        flock -u 9
        flock -x 9
        template_ok || build_template
    fi
    cp -a "$TEMPLATE/data" "$dest"
    exec 9>&-
}

# ---------------------------------------------------------------- nodes

# DIR/<name> -> DATA/<name> when the data lives elsewhere
link_node() {
    [[ $DATA == "$DIR" ]] || ln -s "$DATA/$1" "$DIR/$1"
}

set_node_conf() { # name port
    cat >>"$DIR/$1/postgresql.conf" <<CONF

# ---- cluster.sh: node $1
port = $2
unix_socket_directories = '$DIR'
cluster_name = '$1'
CONF
}

node_port() {
    sed -n "s/^port = \([0-9]*\)$/\1/p" "$DIR/$1/postgresql.conf" | tail -n 1
}

# Start node NAME; if its port was taken meanwhile, move it to a new port.
start_node_retry() {
    local name=$1 attempt port
    for attempt in 1 2 3 4 5; do
        if pg pg_ctl start -D "$DIR/$name" -l "$DIR/$name.log" -w -t 60 -s >/dev/null; then
            return 0
        fi
        if grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets' "$DIR/$name.log" 2>/dev/null &&
            ((attempt < 5)); then
            port=$(pick_ports 1)
            echo "cluster.sh: $name: port taken, retrying on $port" >&2
            set_node_conf "$name" "$port"
            continue
        fi
        return 1
    done
    return 1
}

stop_node_dir() { # datadir [mode]
    local d=$1 mode=${2:-immediate} pid
    [[ -f $d/postmaster.pid ]] || return 0
    if ! pg pg_ctl stop -D "$d" -m "$mode" -w -t 10 -s >/dev/null 2>&1; then
        pid=$(head -n 1 "$d/postmaster.pid" 2>/dev/null || true)
        # only if that pid really is this node's postmaster (it lives in its data dir)
        if [[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$(readlink -f "$d")" ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
}

# "starttime" of a live process (field 22 of /proc/PID/stat); fails for a
# missing or zombie process. Guards the watchdog against PID reuse.
proc_starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    local -a f
    read -r -a f <<<"$stat"
    [[ ${f[0]} != Z ]] || return 1
    echo "${f[19]}"
}

wait_streaming() { # primary_port names...
    local pport=$1 want deadline got
    shift
    want=$#
    (($#)) || return 0
    local list
    list=$(printf "'%s'," "$@")
    list=${list%,}
    deadline=$(($(date +%s) + 60))
    while :; do
        got=$(pg psql -X -A -t -h 127.0.0.1 -p "$pport" -U postgres -d postgres -c \
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN ($list)" 2>/dev/null || true)
        [[ $got == "$want" ]] && return 0
        (($(date +%s) < deadline)) || return 1
        sleep 0.05
    done
}

dump_logs() {
    local f
    for f in "$DIR"/*.log; do
        [[ -f $f ]] || continue
        echo "---- $f (tail)" >&2
        tail -n 20 "$f" >&2
    done
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local replicas=0 delay="" watch_pid="" t0 i name pport
    local -a ports=() rnames=() rports=()
    while (($#)); do
        case $1 in
            --replicas) replicas=${2:?}; shift 2 ;;
            --delay) delay=${2:?}; shift 2 ;;
            --watch-pid) watch_pid=${2:?}; shift 2 ;;
            *) usage ;;
        esac
    done
    [[ $replicas =~ ^[0-9]+$ ]] || die "--replicas wants a number"
    [[ -z $delay || $delay =~ ^[0-9]+$ ]] || die "--delay wants whole seconds"
    [[ -z $delay || $replicas -gt 0 ]] || die "--delay needs at least one replica"
    [[ $DIR != *"'"* && $DIR != *" "* ]] || die "DIR must not contain quotes or spaces"
    [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb not found (apt-get install postgresql)"
    command -v "$PYTHON" >/dev/null || die "python3 not found"
    local st=""
    if [[ -n $watch_pid ]]; then
        st=$(proc_starttime "$watch_pid") || die "--watch-pid $watch_pid: no such process"
    fi
    t0=$(now)

    mkdir -p "$DIR"
    [[ -z $(ls -A "$DIR") ]] || die "$DIR exists and is not empty"
    # From here on, a failure stops whatever was started and removes DIR.
    trap 'rc=$?; if ((rc)); then echo "cluster.sh: start failed" >&2; dump_logs; cmd_stop >/dev/null 2>&1 || rm -rf "$DIR"; fi' EXIT
    local root=${CLUSTER_DATA_ROOT-auto}
    if [[ $root == auto ]]; then
        root=""
        if [[ -d /dev/shm && -w /dev/shm ]] &&
            (($(df -Pk /dev/shm | awk 'NR == 2 { print $4 }') > 1048576)); then
            root=/dev/shm
        fi
    fi
    if [[ -n $root ]]; then
        DATA=$(mktemp -d "$root/pgsluice-data.XXXXXXXX")
        echo "$DATA" >"$DIR/.pgsluice-cluster"
        prepare_dir_for_postgres "$DATA"
    else
        DATA=$DIR
        touch "$DIR/.pgsluice-cluster"
    fi
    prepare_dir_for_postgres "$DIR"

    if [[ -n $watch_pid ]]; then
        # double fork: the watchdog is no job of ours and holds none of our fds
        (setsid nohup bash "$SELF" _watch "$DIR" "$watch_pid" "$st" </dev/null >/dev/null 2>&1 9>&- &)
    fi

    pport=$(pick_ports $((replicas + 1))) || die "no free ports"
    read -r -a ports <<<"$pport"
    pport=${ports[0]}

    copy_template "$DATA/primary"
    link_node primary
    set_node_conf primary "$pport"
    start_node_retry primary || die "primary did not start"
    pport=$(node_port primary)

    # Base backups (at most 4 at once: each takes 2 of the 10 WAL senders).
    for ((i = 1; i <= replicas; i++)); do
        name=replica$i
        rnames+=("$name")
        mkdir -m 0700 "$DATA/$name"
        if ((AS_ROOT)); then chown postgres: "$DATA/$name"; fi
        link_node "$name"
        pg pg_basebackup -h 127.0.0.1 -p "$pport" -U postgres -D "$DATA/$name" \
            -R -X stream -c fast --no-sync --no-manifest 2>"$DIR/$name.basebackup.log" &
        if ((i % 4 == 0)); then wait_all || die "pg_basebackup failed"; fi
    done
    wait_all || die "pg_basebackup failed"

    for ((i = 1; i <= replicas; i++)); do
        name=replica$i
        set_node_conf "$name" "${ports[$i]}"
        if ((i == replicas)) && [[ -n $delay ]]; then
            echo "recovery_min_apply_delay = '${delay}s'" >>"$DIR/$name/postgresql.conf"
        fi
        start_node_retry "$name" &
    done
    wait_all || die "a replica did not start"
    for name in "${rnames[@]}"; do
        rports+=("$(node_port "$name")")
    done

    wait_streaming "$pport" "${rnames[@]}" || die "replicas are not streaming"

    {
        echo "PRIMARY_PORT=$pport"
        echo "REPLICA_PORTS=\"${rports[*]}\""
    } >"$DIR/env"
    cat "$DIR/env"
    trap - EXIT
    echo "cluster.sh: cluster in $DIR started in $(since "$t0")s" >&2
}

# wait for every background job; fail if any failed
wait_all() {
    local rc=0 j
    for j in $(jobs -p); do
        wait "$j" || rc=1
    done
    return $rc
}

cmd_stop() {
    local d wpid data
    [[ -d $DIR ]] || return 0
    [[ -e $DIR/.pgsluice-cluster ]] || die "$DIR is not a cluster.sh directory"
    data=$(cat "$DIR/.pgsluice-cluster")
    for d in "$DIR"/*/; do
        [[ -f $d/PG_VERSION ]] && stop_node_dir "${d%/}" immediate &
    done
    wait
    wpid=$(cat "$DIR/watchdog.pid" 2>/dev/null || true)
    if [[ $wpid =~ ^[0-9]+$ && $wpid != "$$" ]] && grep -qa _watch "/proc/$wpid/cmdline" 2>/dev/null; then
        kill "$wpid" 2>/dev/null || true
    fi
    rm -rf "$DIR" 2>/dev/null || { sleep 0.2; rm -rf "$DIR"; }
    if [[ $data =~ ^/.+/pgsluice-data\.[A-Za-z0-9]+$ ]]; then
        rm -rf "$data" 2>/dev/null || { sleep 0.2; rm -rf "$data"; }
    fi
}

cmd_watch() {
    local pid=$1 st=$2
    echo $$ >"$DIR/watchdog.pid"
    while [[ -e $DIR/.pgsluice-cluster ]]; do
        if [[ $(proc_starttime "$pid" || true) != "$st" ]]; then
            cmd_stop
            exit 0
        fi
        sleep 1
    done
}

check_node() {
    [[ $1 =~ ^(primary|replica[0-9]+)$ ]] || die "bad node name '$1' (primary, replica1, ...)"
    [[ -f $DIR/$1/PG_VERSION ]] || die "no node $1 in $DIR"
}

main() {
    (($# >= 2)) || usage
    local cmd=$1
    DIR=$2
    shift 2
    [[ $DIR == /* ]] || DIR="$PWD/$DIR"
    DIR=$(realpath -m "$DIR")
    case $cmd in
        start) cmd_start "$@" ;;
        stop) cmd_stop ;;
        stop-node)
            check_node "${1:-}"
            stop_node_dir "$DIR/$1" "${2:-immediate}"
            ;;
        start-node)
            check_node "${1:-}"
            pg pg_ctl start -D "$DIR/$1" -l "$DIR/$1.log" -w -t 60 -s >/dev/null
            ;;
        promote)
            check_node "${1:-}"
            pg pg_ctl promote -D "$DIR/$1" -w -t 60 -s
            ;;
        _watch) cmd_watch "$@" ;;
        *) usage ;;
    esac
}

main "$@"
