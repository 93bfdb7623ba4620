#!/usr/bin/env bash
# A test-environment aid (docs/containers.md): when the Dockerfile's base images cannot
# be pulled (no registry reachable), make local stand-ins with the same names:
#   debian:bookworm-slim   from Debian's archive (debootstrap --variant=minbase),
#                          apt caches, lists, docs and locales stripped as in the real one;
#   rust:1-slim-bookworm   the same plus gcc and libc6-dev, and this machine's Rust
#                          toolchain (`rustc --print sysroot`) in /usr/local/rust.
# An image that exists locally or can be pulled is left alone. The debootstrap trees
# are cached in target/docker-stand-in/ between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1-slim-bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=target/docker-stand-in

# The Dockerfile must name exactly these images, or the stand-ins would stand in for nothing.
for image in "$DEBIAN_IMAGE" "$RUST_IMAGE"; do
    grep -q "^FROM $image\b" Dockerfile || { echo "docker-stand-ins: the Dockerfile does not use $image" >&2; exit 1; }
done

have_image() {
    docker image inspect "$1" >/dev/null 2>&1 && return 0
    timeout 60 docker pull "$1" >/dev/null 2>&1
}

# debootstrap into $CACHE/$1 (once), with extra packages $2 (comma-separated).
rootfs() {
    local dir=$CACHE/$1 include=$2
    if [ ! -e "$dir/.complete" ]; then
        command -v debootstrap >/dev/null || { echo "docker-stand-ins: debootstrap is not installed" >&2; exit 1; }
        rm -rf "$dir"
        mkdir -p "$CACHE"
        echo "docker-stand-ins: debootstrap bookworm into $dir${include:+ (with $include)}" >&2
        debootstrap --variant=minbase ${include:+--include=$include} bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 ||
            { tail -20 "$dir.log" >&2; exit 1; }
        # What debian:bookworm-slim leaves out: downloaded packages, package lists,
        # documentation, man pages and translations.
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
            "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/log/*
        find "$dir"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
        touch "$dir/.complete"
    fi
    printf '%s\n' "$dir"
}

if have_image "$DEBIAN_IMAGE"; then
    echo "docker-stand-ins: $DEBIAN_IMAGE is available" >&2
else
    dir=$(rootfs bookworm-minbase "")
    echo "docker-stand-ins: importing a stand-in for $DEBIAN_IMAGE" >&2
    tar --numeric-owner --exclude=./.complete -C "$dir" -c . |
        docker import --change 'CMD ["bash"]' --message "capsule test stand-in (debootstrap minbase bookworm)" - "$DEBIAN_IMAGE" >/dev/null
fi

if have_image "$RUST_IMAGE"; then
    echo "docker-stand-ins: $RUST_IMAGE is available" >&2
else
    command -v rustc >/dev/null || { echo "docker-stand-ins: no Rust toolchain on this machine" >&2; exit 1; }
    dir=$(rootfs bookworm-rust-builder gcc,libc6-dev)
    sysroot=$(rustc --print sysroot)
    echo "docker-stand-ins: importing a stand-in for $RUST_IMAGE (toolchain $(rustc --version), from $sysroot)" >&2
    # The rootfs, then the toolchain's bin/ and lib/ (not its documentation) as /usr/local/rust.
    {
        tar --numeric-owner --exclude=./.complete -C "$dir" -c .
    } >"$CACHE/rust-builder.tar"
    tar --numeric-owner -C "$sysroot" --transform 's,^\.,./usr/local/rust,' -r -f "$CACHE/rust-builder.tar" ./bin ./lib
    docker import \
        --change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'CMD ["bash"]' \
        --message "capsule test stand-in (debootstrap minbase bookworm + gcc + $(rustc --version))" \
        "$CACHE/rust-builder.tar" "$RUST_IMAGE" >/dev/null
    rm -f "$CACHE/rust-builder.tar"
fi
