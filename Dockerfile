# One image with the three binaries: seal (CLI), seal-controller, seal-agent (sidecar).
#
#   docker build -t ghcr.io/seal-dev/seal:0.1.0 .
#
# Build stage: Alpine's Rust builds for musl, so the binaries are static (musl's crt-static is the
# default there). seal-controller and seal-agent, which run in the cluster, are built with the
# size-optimised `small` profile (see Cargo.toml). aws-lc-sys (the constant-time RSA and the TLS stack) compiles
# C: it needs a C compiler, cmake and perl. The toolchain matches rust-toolchain.toml.
FROM rust:1.95.0-alpine3.22 AS build
RUN apk add --no-cache musl-dev gcc g++ make cmake perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p seal-cli --bin seal \
 && cargo build --profile small --locked -p seal-controller --bin seal-controller \
        -p seal-agent --bin seal-agent \
 && mkdir /out \
 && cp target/release/seal target/small/seal-controller target/small/seal-agent /out/

# Run stage: no shell, no package manager, CA certificates and /etc/passwd only; the nonroot
# user (65532) the charts' securityContext also names.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# The charts set the command (seal-controller, seal-agent, or seal for `helm test`).
ENTRYPOINT ["/usr/local/bin/seal-controller"]
