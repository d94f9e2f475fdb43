# pgsluice container image: build with the locked dependencies, run as a non-root user.
#
#   podman build -t pgsluice .          (or docker build)
#   podman run --rm -p 6432:6432 -p 9930:9930 \
#       -v ./pooler.toml:/etc/pgsluice/pooler.toml:ro pgsluice --config /etc/pgsluice/pooler.toml
#
# The base images are build arguments, so a machine without access to a registry can
# build from local images (integration/container.sh does, and says which).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The commit for `pgsluice --version` (.git is not sent to the builder).
ARG PGSLUICE_GIT_COMMIT=unknown
ENV PGSLUICE_GIT_COMMIT=${PGSLUICE_GIT_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
# The linker's layout of the functions a transaction runs (build.rs).
COPY link ./link
COPY src ./src
COPY benches ./benches
# The caches keep downloaded crates and compiled dependencies between builds; the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pgsluice \
    && strip -o /pgsluice target/release/pgsluice \
    && /pgsluice --version

FROM ${RUNTIME_IMAGE}
COPY --from=build /pgsluice /usr/local/bin/pgsluice
COPY pooler.toml.example /etc/pgsluice/pooler.toml.example
# Containers listen on every interface; logs are JSON (stderr is not a terminal).
# Anything else comes from a mounted file (--config) or PGSLUICE_<SECTION>__<KEY>.
ENV PGSLUICE_GENERAL__LISTEN_ADDR=0.0.0.0:6432 \
    PGSLUICE_ADMIN__HTTP_LISTEN_ADDR=0.0.0.0:9930
# 65532 is distroless's "nonroot"; any non-root uid works.
USER 65532:65532
EXPOSE 6432 9930
ENTRYPOINT ["/usr/local/bin/pgsluice"]
