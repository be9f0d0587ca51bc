# syntax=docker/dockerfile:1
#
# agentic-operator container image.
#
# Stage 1 builds a fully static binary for x86_64-unknown-linux-musl in the official Rust
# image. The operator links no shared C libraries (TLS is rustls with ring; the jemalloc
# allocator is compiled in with musl-gcc from musl-tools), so a static musl binary runs on
# the smallest distroless base and does not depend on the base image's glibc version.
# Stage 2 copies it into distroless/static:nonroot (CA certificates, /etc/passwd with the
# nonroot user 65532, no shell, no package manager), with a link /app/operator for the
# scheduled-session CronJobs.
#
#   docker build -t agentic-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# --no-default-features leaves out features meant only for local development.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features \
      -p agentic-operator --bin agentic-operator \
      --target x86_64-unknown-linux-musl \
 && mkdir -p /out/app \
 && cp target/x86_64-unknown-linux-musl/release/agentic-operator /out/agentic-operator \
 && ln -s /agentic-operator /out/app/operator

FROM gcr.io/distroless/static-debian12:nonroot
# /app/operator is the name the ambient-code backend's scheduled-session CronJobs run
# (`./operator session-trigger` in the working directory /app), as in the upstream image.
COPY --from=build /out/ /
WORKDIR /app
USER 65532:65532
ENTRYPOINT ["/agentic-operator"]
