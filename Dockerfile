# Capsule in a container: `docker build -t capsule .`, then
#   docker run --rm -v "$(pwd)":/workspace capsule run ls -l
# docs/containers.md says what runs where and how this file is tested (`make docker-test`).

# ---- builder: the three binaries (stripped), their man pages and completions ----
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY . .
# docker-vendor/, when present, holds the crates (`cargo vendor`, as `make docker` does):
# the build then needs no network.
RUN set -eu; \
    if [ -d docker-vendor ]; then \
        mkdir -p .cargo; \
        printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "docker-vendor"\n' \
            > .cargo/config.toml; \
    fi; \
    cargo build --release --locked -p capsule-cli -p capsule-compiler -p capsule-launch --bins \
        --config 'profile.release.strip="symbols"' --config 'profile.release.debug=false'; \
    mkdir -p /out/bin /out/man/man1 /out/bash /out/zsh /out/fish; \
    cp target/release/capsule target/release/capsulec target/release/capsule-launch /out/bin/; \
    /out/bin/capsule man --out /out/man/man1; \
    /out/bin/capsulec man --out /out/man/man1; \
    cp runtime-stub/man/capsule-launch.1 /out/man/man1/; \
    gzip -9n /out/man/man1/*.1; \
    for bin in capsule capsulec; do \
        /out/bin/$bin completions bash > /out/bash/$bin; \
        /out/bin/$bin completions zsh > /out/zsh/_$bin; \
        /out/bin/$bin completions fish > /out/fish/$bin.fish; \
    done

# ---- runtime: slim Debian, a non-root user, the workspace mounted on /workspace ----
FROM debian:bookworm-slim
# The version is the workspace's (Cargo.toml); make docker-test checks they agree.
LABEL org.opencontainers.image.title="capsule" \
      org.opencontainers.image.description="Run tools in a sandbox (seccomp-BPF + Landlock), with a Blake3 Merkle-chained audit log" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/bin/ /usr/local/bin/
COPY --from=builder /out/man/ /usr/local/share/man/
COPY --from=builder /out/bash/ /usr/share/bash-completion/completions/
COPY --from=builder /out/zsh/ /usr/share/zsh/vendor-completions/
COPY --from=builder /out/fish/ /usr/share/fish/vendor_completions.d/
# The user's home holds the audit log (~/.local/state/capsule) and the compile cache
# (~/.cache/capsule), outside the workspace the command may write.
# The two directories exist in the image so that a named volume mounted on one of them
# (to keep the log past `--rm`) starts out owned by the user.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/sh capsule \
    && install -d -o capsule -g capsule -m 0700 /home/capsule/.local /home/capsule/.local/state \
        /home/capsule/.local/state/capsule /home/capsule/.cache /home/capsule/.cache/capsule \
    && mkdir -p /workspace
# `capsule run` refuses to run in /workspace when nothing is mounted there.
ENV CAPSULE_WORKSPACE_MOUNT=/workspace
USER capsule
WORKDIR /workspace
ENTRYPOINT ["capsule"]
CMD ["--help"]
