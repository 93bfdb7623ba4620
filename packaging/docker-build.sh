#!/usr/bin/env bash
# `make docker`: build the image tagged `capsule` from the repository's Dockerfile.
# Where a registry cannot be reached, the base images are local stand-ins
# (docker-stand-ins.sh) and the crates come from docker-vendor/ (`cargo vendor` on
# this machine): the Dockerfile built is the one users build (docs/containers.md).
set -euo pipefail
cd "$(dirname "$0")/.."

docker info >/dev/null 2>&1 || { echo "make docker: no Docker engine answers (is dockerd running?)" >&2; exit 1; }
packaging/docker-stand-ins.sh
echo "make docker: vendoring the crates into docker-vendor/" >&2
cargo vendor --locked --quiet docker-vendor >/dev/null
docker build -t capsule .
