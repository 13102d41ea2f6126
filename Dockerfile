# syntax=docker/dockerfile:1
# The mysimbdp host as an image: the `mysimbdp` binary (serve, and the CLI) on Debian slim,
# run as an unprivileged user. compose.yaml builds it for its hosts
# (`docker compose --profile platform up -d --build --wait`, docs/deployment.md);
# `docker build -t mysimbdp .` builds it alone. The sample apps and the guest SDKs are not
# built: a host runs the apps tenants upload.
#
# Run it with the operator's config at /etc/mysimbdp/mysimbdp.toml (the API on 0.0.0.0:8443
# with its [server.tls] certificate, the services' addresses; config/compose/mysimbdp.toml is
# compose's) and MYSIMBDP_OPERATOR_TOKEN in the environment.

# The toolchain: any stable Rust at least the workspace's rust-version (Cargo.toml).
ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS builder
# protoc: etcd-client's build compiles etcd's protobuf API. cmake: aws-lc-sys's fallback
# build when its own C builder does not fit the platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The crates and the build directory live in BuildKit caches between builds of the image, so
# a change rebuilds incrementally; the binary is copied out of the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p mysimbdp-host --bin mysimbdp \
    && install -D -m 0755 target/release/mysimbdp /out/mysimbdp

FROM debian:bookworm-slim AS runtime
# ca-certificates: the system's roots (services reached over TLS with public certificates).
# openssl: scripts/tls-material, which compose's tls-init service runs from this image.
# curl: the healthcheck (GET /readyz over HTTPS).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates openssl curl \
    && rm -rf /var/lib/apt/lists/*
# The user a host runs as (uid/gid 10001, no login), its home, and a directory for the
# compile cache (sandbox.engine.cache_dir = "/var/cache/mysimbdp"; without it the cache is
# in the home's .cache/mysimbdp).
RUN groupadd --system --gid 10001 mysimbdp \
    && useradd --system --uid 10001 --gid mysimbdp --home-dir /var/lib/mysimbdp \
        --create-home --shell /usr/sbin/nologin mysimbdp \
    && install -d -o mysimbdp -g mysimbdp -m 0750 /var/cache/mysimbdp \
    && install -d -m 0755 /etc/mysimbdp
COPY --from=builder /out/mysimbdp /usr/local/bin/mysimbdp
COPY --chmod=0755 scripts/tls-material /usr/local/bin/tls-material
USER mysimbdp
WORKDIR /var/lib/mysimbdp
ENV HOME=/var/lib/mysimbdp
EXPOSE 8443
ENTRYPOINT ["mysimbdp"]
CMD ["serve", "--config", "/etc/mysimbdp/mysimbdp.toml"]
