#!/usr/bin/env bash
# Builds pgsluice's container image from the Dockerfile with podman, runs it against a
# throwaway PostgreSQL cluster (integration/cluster.sh) and serves queries through it:
# once configured from the environment alone (a password from a mounted file), once from
# a mounted pooler.toml. Prints what it built and ran.
#
#   integration/container.sh            (as root; installs podman and runc if missing)
#
# Base images: the Dockerfile's defaults (docker.io/library/rust, distroless) when a
# registry answers; otherwise local ones made here (RUST_IMAGE / RUNTIME_IMAGE to choose):
#   localhost/pgsluice-base:bookworm     a Debian 12 minbase rootfs made with debootstrap
#   localhost/pgsluice-rust:local        that, plus gcc, this machine's Rust toolchain
#                                        (rustup's, copied in: no Rust image can be pulled)
#                                        and its CA bundle (for crates.io through a proxy)
# Environment: PODMAN_RUNTIME (default: runc when installed: crun refuses this machine's
# hybrid cgroups), IMAGE (default localhost/pgsluice:dev).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=${IMAGE:-localhost/pgsluice:dev}
WORK=$(mktemp -d /tmp/pgsluice-container.XXXXXX)
CTR=""
say() { echo "==> $*" >&2; }

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
    [[ -n $CTR ]] && podman "${RUNTIME_OPT[@]}" rm -f "$CTR" >/dev/null 2>&1
    "$ROOT/integration/cluster.sh" stop "$WORK/cluster" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
    say "apt-get install podman runc debootstrap"
    apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
    apt-get install -y -q -o DPkg::Lock::Timeout=600 podman runc debootstrap >/dev/null
fi
RUNTIME=${PODMAN_RUNTIME:-$(command -v runc >/dev/null && echo runc || echo crun)}
RUNTIME_OPT=(--runtime "$RUNTIME")
# Without CAP_SYS_RESOURCE (as in this sandbox) the runtime may not raise rlimits:
# ask for no more than the current hard limits.
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
ULIMITS=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit nproc=4096:4096)

base_images() {
    if [[ -n ${RUST_IMAGE:-} && -n ${RUNTIME_IMAGE:-} ]]; then
        return
    fi
    if timeout 60 podman pull -q docker.io/library/rust:1.95-slim-bookworm >/dev/null 2>&1 &&
        timeout 60 podman pull -q gcr.io/distroless/cc-debian12:nonroot >/dev/null 2>&1; then
        RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
        RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
        return
    fi
    say "no registry answers: making local base images"
    RUNTIME_IMAGE=localhost/pgsluice-base:bookworm
    RUST_IMAGE=localhost/pgsluice-rust:local
    if ! podman image exists "$RUNTIME_IMAGE"; then
        local rootfs=/var/tmp/pgsluice-rootfs-bookworm
        if [[ ! -x $rootfs/bin/sh ]]; then
            say "debootstrap --variant=minbase bookworm $rootfs"
            rm -rf "$rootfs"
            debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
        fi
        say "podman import $rootfs as $RUNTIME_IMAGE"
        tar -C "$rootfs" -c . | podman import - "$RUNTIME_IMAGE" >/dev/null
    fi
    if ! podman image exists "$RUST_IMAGE"; then
        local sysroot ctx
        sysroot=$(rustc --print sysroot)
        ctx=$WORK/rust-ctx
        mkdir -p "$ctx/rust"
        cp -a "$sysroot/bin" "$sysroot/lib" "$ctx/rust/"
        # This machine's CA bundle: where TLS to crates.io passes through a proxy whose CA
        # only the host trusts, cargo in the builder needs it too.
        cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
        cat >"$ctx/Containerfile" <<EOT
FROM $RUNTIME_IMAGE
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:\$PATH CARGO_HOME=/usr/local/cargo
RUN rustc --version && cargo --version
EOT
        say "building $RUST_IMAGE from $RUNTIME_IMAGE + gcc + $(rustc --version)"
        podman build "${RUNTIME_OPT[@]}" --network host "${ULIMITS[@]}" -q -t "$RUST_IMAGE" "$ctx" >/dev/null
    fi
}

base_images
COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
say "podman build -t $IMAGE (RUST_IMAGE=$RUST_IMAGE, RUNTIME_IMAGE=$RUNTIME_IMAGE, commit $COMMIT)"
podman build "${RUNTIME_OPT[@]}" --network host "${ULIMITS[@]}" \
    --build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
    --build-arg "PGSLUICE_GIT_COMMIT=$COMMIT" -t "$IMAGE" "$ROOT"

run() { podman "${RUNTIME_OPT[@]}" run --rm --network host "${ULIMITS[@]}" "$@"; }
say "podman run $IMAGE --version: $(run "$IMAGE" --version)"
say "image user: $(podman image inspect --format '{{.Config.User}}' "$IMAGE"), entrypoint: $(podman image inspect --format '{{.Config.Entrypoint}}' "$IMAGE"), size: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"

say "starting PostgreSQL (primary + 1 replica)"
"$ROOT/integration/cluster.sh" start "$WORK/cluster" --replicas 1 --watch-pid $$ >"$WORK/cluster.env"
# shellcheck disable=SC1091
source "$WORK/cluster.env"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
    local http=$1
    for _ in $(seq 100); do
        if python3 - "$http" <<'PY' 2>/dev/null; then
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2).status == 200 else 1)
PY
            return 0
        fi
        sleep 0.2
    done
    return 1
}
check() {
    local name=$1 port=$2 http=$3
    if ! wait_ready "$http"; then
        podman logs "$CTR" >&2 || true
        echo "container.sh: $name: /readyz never answered 200" >&2
        exit 1
    fi
    local url="postgres://app:app_pw@127.0.0.1:$port/app"
    local got
    got=$(psql -X -A -t -c "SELECT current_user, inet_server_port(), pg_is_in_recovery()" "$url")
    say "$name: psql through the container: $got (PostgreSQL primary on $PRIMARY_PORT, replica on $REPLICA_PORTS)"
    say "$name: container process runs as uid $(podman top "$CTR" huser user | tail -n 1)"
    podman "${RUNTIME_OPT[@]}" rm -f "$CTR" >/dev/null
    CTR=""
}

# 1. Environment only; the password from a mounted file; the Service variables
#    Kubernetes would inject for a Service named pgsluice, which must be ignored.
mkdir -p "$WORK/secret"
printf 'app_pw\n' >"$WORK/secret/app-password"
chmod 0755 "$WORK/secret"
chmod 0644 "$WORK/secret/app-password"
PORT=$(free_port)
HTTP=$(free_port)
CTR=$(podman "${RUNTIME_OPT[@]}" run -d --network host "${ULIMITS[@]}" \
    -e "PGSLUICE_GENERAL__LISTEN_ADDR=127.0.0.1:$PORT" \
    -e "PGSLUICE_ADMIN__HTTP_LISTEN_ADDR=127.0.0.1:$HTTP" \
    -e "PGSLUICE_DATABASES__APP__PRIMARY=127.0.0.1:$PRIMARY_PORT" \
    -e "PGSLUICE_DATABASES__APP__REPLICAS=[\"127.0.0.1:${REPLICA_PORTS%% *}\"]" \
    -e "PGSLUICE_USERS__APP__PASSWORD_FILE=/run/secrets/app-password" \
    -e PGSLUICE_SERVICE_HOST=10.96.0.17 -e PGSLUICE_SERVICE_PORT=6432 \
    -e PGSLUICE_PORT=tcp://10.96.0.17:6432 -e PGSLUICE_PORT_6432_TCP_ADDR=10.96.0.17 \
    -v "$WORK/secret:/run/secrets:ro" "$IMAGE")
check "environment" "$PORT" "$HTTP"

# 2. A mounted pooler.toml. The image sets PGSLUICE_GENERAL__LISTEN_ADDR and
#    PGSLUICE_ADMIN__HTTP_LISTEN_ADDR (0.0.0.0:6432 and :9930), which win over the file;
#    with the host's network (no port mapping here) they are moved to free loopback ports.
PORT=$(free_port)
HTTP=$(free_port)
cat >"$WORK/pooler.toml" <<EOT
[general]
pool_mode = "transaction"

[[users]]
name = "app"
password = "app_pw"

[databases.app]
primary = "127.0.0.1:$PRIMARY_PORT"
EOT
chmod 0644 "$WORK/pooler.toml"
chmod 0755 "$WORK"
CTR=$(podman "${RUNTIME_OPT[@]}" run -d --network host "${ULIMITS[@]}" \
    -e "PGSLUICE_GENERAL__LISTEN_ADDR=127.0.0.1:$PORT" \
    -e "PGSLUICE_ADMIN__HTTP_LISTEN_ADDR=127.0.0.1:$HTTP" \
    -v "$WORK/pooler.toml:/etc/pgsluice/pooler.toml:ro" "$IMAGE" --config /etc/pgsluice/pooler.toml)
check "mounted pooler.toml" "$PORT" "$HTTP"

say "image $IMAGE kept (podman rmi $IMAGE removes it)"
say "container check passed"
