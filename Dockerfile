# syntax=docker/dockerfile:1
# statusgate's container image (docs/install.md, "Container image").
#   docker build -t statusgate:0.1.0 --build-arg REVISION="$(git rev-parse --short HEAD)" \
#     --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" .
#   docker run --read-only --tmpfs /run/statusgate -p 8080:8080 -p 9090:9090 statusgate:0.1.0
# Build stage: the official Rust image, at least the toolchain the locked dependencies need
# (tests/packaging/test.sh checks RUST_VERSION against Cargo.toml and Cargo.lock). Runtime
# stage: distroless cc (glibc and libgcc, no shell, no package manager), user 65532.
# The root file system may be read-only: the only path the gateway writes is /run/statusgate
# (the graceful-upgrade socket of the shipped configuration); mount a tmpfs or emptyDir there.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# cmake: the zlib-ng build of pingora's compression (scripts/setup installs it on hosts).
# Not pinned to a version (DL3008): the image tag fixes the Debian release, and a pinned
# version disappears from the archive at the release's next point update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The git revision and build date `statusgate --version` prints (build.rs): .git is not in the
# build context (.dockerignore), so the revision comes from this argument.
ARG REVISION=unknown
# Empty: the build's day.
ARG SOURCE_DATE_EPOCH=
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    STATUSGATE_REVISION="${REVISION}" cargo build --release --locked --bin statusgate \
    && install -D -m 0755 target/release/statusgate /out/usr/bin/statusgate
# /etc/statusgate as the Debian package lays it out: the configuration (the container
# variant: admin on 0.0.0.0:9090, JSON logs) and the shipped profiles under rules/.
RUN install -D -m 0644 deploy/package/statusgate.container.yaml /out/etc/statusgate/statusgate.yaml \
    && install -d -m 0755 /out/etc/statusgate/rules \
    && install -m 0644 rules/*.yaml /out/etc/statusgate/rules/ \
    && install -d -m 0750 /out/run/statusgate \
    && /out/usr/bin/statusgate check -c /out/etc/statusgate/statusgate.yaml

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="statusgate" \
      org.opencontainers.image.description="A status-normalizing edge gateway on pingora: vendor HTTP statuses and error bodies in, RFC 9110 / RFC 9457 out" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/usr/bin/statusgate /usr/bin/statusgate
COPY --from=build /out/etc/statusgate /etc/statusgate
COPY --from=build --chown=65532:65532 /out/run/statusgate /run/statusgate
USER 65532:65532
# The gateway listener and the admin listener (/healthz, /readyz, /metrics).
EXPOSE 8080 9090
ENTRYPOINT ["statusgate"]
CMD ["run", "-c", "/etc/statusgate/statusgate.yaml"]
