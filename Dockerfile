# One image with the three binaries: seal (CLI), seal-controller, seal-agent (sidecar).
#
#   docker build -t REGISTRY/seal:TAG .
#
# Three stages. `build` compiles the binaries on Debian 12 (bookworm), the same glibc as the
# runtime base. `binaries` holds only them. `runtime` is what ships: the binaries on distroless
# cc-debian12 (glibc, libgcc, CA certificates, /etc/passwd; no shell, no package manager), as
# the nonroot user 65532 the charts' securityContext also names, on a read-only root filesystem.
#
# The test suite builds this same `runtime` stage with its two inputs replaced, since nothing can
# be pulled where it runs (`cargo xtask image`, see xtask/src/image.rs):
#   podman build --target runtime --build-context binaries=DIR \
#     --build-arg RUNTIME_BASE=localhost/seal-runtime-base:... .
# so the stage users build is the stage the pods in the tests run.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

FROM docker.io/library/rust:1.95.0-bookworm AS build
# aws-lc-sys (constant-time RSA, the TLS stack) compiles C with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p seal-cli --bin seal \
 && cargo build --profile small --locked -p seal-controller --bin seal-controller \
        -p seal-agent --bin seal-agent \
 && mkdir /out \
 && cp target/release/seal target/small/seal-controller target/small/seal-agent /out/

FROM scratch AS binaries
COPY --from=build /out/ /

FROM ${RUNTIME_BASE} AS runtime
COPY --from=binaries / /usr/local/bin/
USER 65532:65532
# The charts set the command (seal-controller, seal-agent, or seal for `helm test`).
ENTRYPOINT ["/usr/local/bin/seal-controller"]
