#!/usr/bin/env bash
# Installs what pgsluice's tests, demo and CI need on a Debian 12 machine, skipping
# whatever is already there (so it is quick the second time):
#   Debian: postgresql (15) + postgresql-contrib, postgresql-client (psql, pgbench),
#           pgbouncer (benchmarks, and the import test reads its pgbouncer.ini), python3
#           libpostgresql-jdbc-java + default-jre-headless (pgjdbc), nodejs + npm
#   PyPI:   psycopg[binary] and asyncpg (driver checks), prometheus_client (parses
#           /metrics), yamllint and kubernetes-validate (deploy/ manifests; PyYAML comes
#           with them)
#   npm:    pg (node-postgres), pinned by integration/node/package-lock.json, into
#           integration/node/node_modules
# The packages' own services are kept from starting: the tests start their own
# clusters on free ports (integration/cluster.sh).
#
#   integration/deps.sh          (as root; otherwise it lists what is missing)
# Called by .ci/run and integration/demo.sh; the README's test command runs it first.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { echo "deps.sh: $*" >&2; }

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
apt_missing=()
[[ -x $PG_BIN/initdb ]] || apt_missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null || apt_missing+=(postgresql-client)
command -v pgbench >/dev/null || apt_missing+=(postgresql-client)
{ command -v pgbouncer >/dev/null && [[ -e /etc/pgbouncer/pgbouncer.ini ]]; } || apt_missing+=(pgbouncer)
command -v python3 >/dev/null || apt_missing+=(python3)
[[ -e /usr/share/java/postgresql.jar ]] || apt_missing+=(libpostgresql-jdbc-java)
command -v java >/dev/null || apt_missing+=(default-jre-headless)
command -v node >/dev/null || apt_missing+=(nodejs npm)
npm_missing=0
[[ -d $(dirname "$0")/node/node_modules/pg ]] || npm_missing=1

py_missing=()
if command -v python3 >/dev/null; then
    python3 -c 'import psycopg' 2>/dev/null || py_missing+=("psycopg[binary]")
    python3 -c 'import asyncpg' 2>/dev/null || py_missing+=(asyncpg)
    python3 -c 'import prometheus_client' 2>/dev/null || py_missing+=(prometheus_client)
    python3 -c 'import yaml' 2>/dev/null || py_missing+=(PyYAML)
    command -v yamllint >/dev/null || py_missing+=(yamllint)
    command -v kubernetes-validate >/dev/null || py_missing+=(kubernetes-validate)
else
    py_missing+=("psycopg[binary]" asyncpg prometheus_client PyYAML yamllint kubernetes-validate)
fi

if ((${#apt_missing[@]} == 0 && ${#py_missing[@]} == 0 && npm_missing == 0)); then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    say "missing, and not root so not installing:"
    ((${#apt_missing[@]})) && say "  apt-get install ${apt_missing[*]}"
    ((${#py_missing[@]})) && say "  python3 -m pip install ${py_missing[*]}"
    ((npm_missing)) && say "  npm ci --prefix integration/node"
    exit 1
fi

if ((${#apt_missing[@]})); then
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    say "apt-get install ${apt_missing[*]}"
    apt-get -q -o DPkg::Lock::Timeout=600 update
    apt-get install -y -q -o DPkg::Lock::Timeout=600 "${apt_missing[@]}" python3-pip
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    # Best effort: stop whatever the packages started anyway.
    if command -v pg_lsclusters >/dev/null; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
            pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
        done
    fi
    service pgbouncer stop >/dev/null 2>&1 || true
fi

if ((${#py_missing[@]})); then
    python3 -m pip --version >/dev/null 2>&1 || apt-get install -y -q python3-pip
    say "pip install ${py_missing[*]}"
    python3 -m pip install -q "${py_missing[@]}" ||
        python3 -m pip install -q --break-system-packages "${py_missing[@]}"
fi

if ((npm_missing)); then
    say "npm ci --prefix integration/node"
    npm ci --prefix "$(dirname "$0")/node" --no-audit --no-fund
fi
