#!/usr/bin/env bash
# The Python SDK's tests, as a user installs it: `pip install ./sdk/python` into a
# fresh virtual environment, then pytest. Run by `make test` (after the Rust binaries
# the tests compare against are built). As root with CAPSULE_TEST_USER set, the suite
# runs a second time as that user, from a venv of Debian's /usr/bin/python3.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
python="${PYTHON:-python3}"
work="$repo/target/sdk-python"
mkdir -p "$work"

# One wheel (abi3: every Python >= 3.9), built the way `pip install ./sdk/python` builds.
rm -rf "$work/wheels"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" ./sdk/python
wheel="$(ls "$work"/wheels/capsule_sandbox-*.whl)"

fresh_venv() { # PYTHON DIR
    rm -rf "$2"
    "$1" -m venv "$2"
    "$2/bin/pip" install --quiet --disable-pip-version-check "$wheel" pytest mcp
}

fresh_venv "$python" "$work/venv"
echo "sdk/python: pytest as $(id -un) with $("$work/venv/bin/python" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')"
(cd "$repo/sdk/python" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests)

if [ "$(id -u)" = 0 ]; then
    if [ -z "${CAPSULE_TEST_USER:-}" ]; then
        if [ "${CI:-}" = true ]; then echo "sdk/python: CAPSULE_TEST_USER is not set" >&2; exit 1; fi
        echo "sdk/python: SKIPPED the unprivileged run: CAPSULE_TEST_USER is not set"
        exit 0
    fi
    user="$CAPSULE_TEST_USER"
    home="$(getent passwd "$user" | cut -d: -f6)"
    # Outside /tmp and the home directories, readable by the user.
    user_venv="/var/tmp/capsule-sdk-venv-$user"
    fresh_venv /usr/bin/python3 "$user_venv"
    chmod -R a+rX "$user_venv"
    echo "sdk/python: pytest as $user with /usr/bin/python3"
    (cd "$repo/sdk/python" && setpriv --reuid="$user" --regid="$user" --init-groups -- \
        env -u XDG_STATE_HOME -u XDG_CACHE_HOME HOME="$home" USER="$user" PYTHONDONTWRITEBYTECODE=1 \
        "$user_venv/bin/python" -m pytest -q -p no:cacheprovider tests)
fi
