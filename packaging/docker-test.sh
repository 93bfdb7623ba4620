#!/usr/bin/env bash
# `make docker-test` (after `make docker`): the image and compose file on a real Docker
# engine, under Docker's default seccomp profile and capabilities.
#  1. the README's Docker commands, verbatim (the build in the repository, the run in a
#     temporary folder);
#  2. no workspace mounted, a read-only one, root and the image's user; a uid with no
#     passwd entry (refused with the way out, which is then shown to work);
#  3. `capsule verify` inside the container, a tampered log caught there, and the user
#     named in the records;
#  4. the escape attacks of tests/escapes/ inside the container (packaging/docker-escapes.sh,
#     with packaging/docker-escape-harness.c as listener and pty), each first shown to
#     work there without Capsule, as the image's user and as root;
#  5. docker-compose.yml, as written;
#  6. the image: size (at most 120 MB), user, workdir, entrypoint, labels, stripped
#     binaries, man pages and completions.
# Fails, loudly, when no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$(date +%s)
MAX_IMAGE_BYTES=$((120 * 1000 * 1000))

step() { printf '\n== docker-test: %s\n' "$*"; }
fail() { printf 'docker-test: FAILED: %s\n' "$*" >&2; exit 1; }
expect_in() { # WHAT NEEDLE HAYSTACK
    grep -qF -- "$2" <<<"$3" || fail "$1: expected \"$2\" in:
$3"
}

docker info >/dev/null 2>&1 || fail "no Docker engine answers (CI=${CI:-unset}); .ci/run installs docker.io and starts dockerd"
docker info --format '{{.SecurityOptions}}' | grep -q seccomp || fail "the engine runs without seccomp"

work=$(mktemp -d /tmp/capsule-docker-test.XXXXXX)
trap 'rm -rf "$work"; docker-compose -p capsule-docker-test down --rmi local >/dev/null 2>&1 || true' EXIT
# The image's user (uid 1000) reads the folder as "others" here (CI runs as root).
chmod 755 "$work"

step "1. the README's Docker commands"
block=$(awk '/^## Docker$/ {in_section = 1; next} in_section && /^## / {exit}
             in_section && /^```/ {fence++; next} in_section && fence == 1 {print}' README.md)
build_cmd=$(sed -n 1p <<<"$block")
run_cmd=$(sed -n 2p <<<"$block")
[ "$build_cmd" = "docker build -t capsule ." ] || fail "README's build command is \"$build_cmd\""
[ "$run_cmd" = 'docker run --rm -v $(pwd):/workspace capsule run ls -l' ] || fail "README's run command is \"$run_cmd\""
[ "$(wc -l <<<"$block")" = 2 ] || fail "README's Docker block has more than the two commands"
echo "\$ $build_cmd"
eval "$build_cmd" >"$work.build.log" 2>&1 || { tail -30 "$work.build.log"; fail "docker build"; }
rm -f "$work.build.log"
echo 'made on the host' >"$work/hello-from-the-host.txt"
chmod 644 "$work/hello-from-the-host.txt"
echo "\$ (in $work) $run_cmd"
out=$(cd "$work" && eval "$run_cmd" 2>&1) || fail "the README's run command: $out"
echo "$out"
expect_in "ls -l of the mounted folder" "hello-from-the-host.txt" "$out"

step "2. Docker's default seccomp profile, no workspace, a read-only one, root"
status=$(docker run --rm -v "$work":/workspace --entrypoint grep capsule '^Seccomp:' /proc/self/status)
expect_in "the container's own seccomp filter" "Seccomp:	2" "$status"
set +e
out=$(docker run --rm capsule run ls -l 2>&1)
code=$?
set -e
echo "no workspace: exit $code: $out"
[ "$code" = 125 ] || fail "with no workspace mounted, exit $code (expected 125)"
expect_in "no workspace" "nothing is mounted on /workspace" "$out"
out=$(docker run --rm -v "$work":/workspace:ro capsule run ls -l 2>&1) || fail "read-only workspace: $out"
echo "read-only workspace: $out"
expect_in "read-only workspace" "mounted read-only" "$out"
expect_in "read-only workspace" "hello-from-the-host.txt" "$out"
set +e
out=$(docker run --rm --user root -v "$work":/workspace:ro capsule run touch made-in-a-read-only-workspace 2>&1)
code=$?
set -e
[ "$code" != 0 ] && [ ! -e "$work/made-in-a-read-only-workspace" ] || fail "wrote to a read-only workspace: $out"
out=$(docker run --rm --user root -v "$work":/workspace capsule run sh -c 'id -u; echo written >made-by-root') ||
    fail "as root: $out"
expect_in "as root" "0" "$out"
[ "$(cat "$work/made-by-root")" = written ] || fail "root's command did not write the workspace"
rm -f "$work/made-by-root"

step "2b. a uid with no passwd entry (--user 12345:12345, so HOME=/)"
set +e
out=$(cd "$work" && docker run --rm --user 12345:12345 -v "$(pwd)":/workspace capsule run ls -l 2>&1)
code=$?
set -e
echo "the README's run command with --user 12345:12345: exit $code: $out"
[ "$code" = 125 ] || fail "a uid with no passwd entry: exit $code (expected 125)"
expect_in "a uid with no passwd entry" "cannot create /.local/state/capsule for the audit log" "$out"
expect_in "a uid with no passwd entry" "uid 12345 has no entry in the password database" "$out"
expect_in "a uid with no passwd entry" "-e HOME=/home/me --tmpfs /home/me:uid=12345" "$out"
if grep -qF hello-from-the-host.txt <<<"$out"; then fail "the command ran without an audit log: $out"; fi
# What keeps no state works as is.
out=$(docker run --rm --user 12345:12345 capsule --version 2>&1) || fail "capsule --version as uid 12345: $out"
expect_in "capsule --version as uid 12345" "capsule " "$out"
# The remedy the message gives works; the log records the uid, and no name.
out=$(docker run --rm --user 12345:12345 -e HOME=/home/me --tmpfs /home/me:uid=12345 -v "$work":/workspace \
    --entrypoint sh capsule -c '
        set -e
        capsule run ls -l
        capsule verify >/dev/null && echo "log verified"
        grep -o "\"uid\":[0-9]*,\"user\":[^,}]*" "$HOME/.local/state/capsule/capsule.log" | sort -u
    ' 2>&1) || fail "a uid with no passwd entry, given a home: $out"
echo "$out"
expect_in "a uid with a home on tmpfs" "hello-from-the-host.txt" "$out"
expect_in "a uid with a home on tmpfs" "log verified" "$out"
expect_in "the record of a uid with no passwd entry" '"uid":12345,"user":null' "$out"
# The other remedy: a folder of the host, owned by that uid, as its home keeps the log.
mkdir -m 700 "$work/home-12345"
chown 12345:12345 "$work/home-12345"
docker run --rm --user 12345:12345 -e HOME=/home/me -v "$work/home-12345":/home/me -v "$work":/workspace \
    capsule run true || fail "a uid with no passwd entry, its home a folder of the host"
[ -s "$work/home-12345/.local/state/capsule/capsule.log" ] || fail "no log kept in the host's folder"
rm -rf "$work/home-12345"

step "3. capsule verify inside the container (the image's user, then root)"
for user in capsule root; do
    out=$(docker run --rm --user "$user" -v "$work":/workspace --entrypoint sh capsule -c '
        set -e
        capsule run echo "logged once" >/dev/null
        capsule run ls -l >/dev/null
        capsule verify
        log=$HOME/.local/state/capsule/capsule.log
        grep -o "\"uid\":[0-9]*,\"user\":[^,}]*" "$log" | sort -u
        sed -i "s/logged once/logged twice/" "$log"
        if capsule verify; then echo "TAMPERING NOT DETECTED"; exit 1; else echo "tampering detected: exit $?"; fi
    ' 2>&1) || fail "verify as $user: $out"
    echo "$user: $out"
    verify_outputs="${verify_outputs:-}$out
"
    expect_in "verify as $user" "tampering detected: exit 1" "$out"
done
# No USER in a container: the records name the user from the image's passwd.
expect_in "the user in the records" '"uid":1000,"user":"capsule"' "$verify_outputs"
expect_in "the user in the records" '"uid":0,"user":"root"' "$verify_outputs"

step "4. the escape attacks inside the container"
mkdir -p "$work/escapes"
for source in tests/escapes/*.c; do
    cc -O1 -Wall -Wextra -Werror -o "$work/escapes/$(basename "$source" .c)" "$source"
done
# The listener and the pty of the network and terminal attacks (test-only, not in the image).
cc -O1 -Wall -Wextra -Werror -o "$work/escapes/harness" packaging/docker-escape-harness.c
cp packaging/docker-escapes.sh "$work/escapes/run.sh"
chmod -R a+rX "$work/escapes"
# The fork bomb's bound: the default policy's `processes:`, as tests/tests/fork_bomb.rs
# reads it, and Docker's --pids-limit beneath it, the safety net for root (whom
# RLIMIT_NPROC does not hold) and above the bare bomb's PROCESS_LIMIT + 64 children.
process_limit=$(sed -n 's/^ *processes: *\([0-9][0-9]*\).*/\1/p' cli/src/default-policy.yaml)
[ -n "$process_limit" ] || fail "no limits: processes: in cli/src/default-policy.yaml"
pids_limit=$((process_limit + 256))
for user in capsule root; do
    echo "-- as $user"
    # A workspace both users may write (sticky, like /tmp); the programs read-only in /opt.
    mkdir -m 1777 "$work/ws-$user"
    docker run --rm --user "$user" --pids-limit "$pids_limit" \
        -e PROCESS_LIMIT="$process_limit" -e PIDS_LIMIT="$pids_limit" \
        -v "$work/ws-$user":/workspace -v "$work/escapes":/opt/escapes:ro \
        --entrypoint sh capsule /opt/escapes/run.sh || fail "escape attacks as $user"
done

step "5. docker-compose.yml"
out=$(docker-compose -p capsule-docker-test up --build --abort-on-container-exit --exit-code-from capsule 2>&1) ||
    { echo "$out" | tail -30; fail "docker-compose up"; }
echo "$out" | grep -v '^Step\|^ --->\|^Removing\|^Successfully' | tail -5
expect_in "docker-compose up" "Hello from Docker" "$out"

step "6. the image"
size=$(docker image inspect capsule --format '{{.Size}}')
echo "size: $size bytes ($((size / 1000000)) MB; at most $((MAX_IMAGE_BYTES / 1000000)) MB)"
[ "$size" -le "$MAX_IMAGE_BYTES" ] || fail "the image is $size bytes"
[ "$(docker image inspect capsule --format '{{.Config.User}}')" = capsule ] || fail "the image's user is not capsule"
[ "$(docker image inspect capsule --format '{{.Config.WorkingDir}}')" = /workspace ] || fail "WORKDIR"
[ "$(docker image inspect capsule --format '{{json .Config.Entrypoint}}')" = '["capsule"]' ] || fail "ENTRYPOINT"
for label in title description version licenses; do
    value=$(docker image inspect capsule --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}")
    [ -n "$value" ] || fail "no org.opencontainers.image.$label label"
done
version=$(docker image inspect capsule --format '{{index .Config.Labels "org.opencontainers.image.version"}}')
[ "$(docker run --rm capsule --version)" = "capsule $version" ] || fail "the version label $version is not capsule's"
out=$(docker run --rm --entrypoint sh capsule -c '
    echo "uid $(id -u) home $HOME"; test -d "$HOME" && test -w "$HOME" && echo "home writable"
    for f in capsule capsulec capsule-launch; do test -x /usr/local/bin/$f && echo "bin $f"; done
    ls /usr/local/share/man/man1 | tr "\n" " "; echo
    ls /usr/share/bash-completion/completions /usr/share/zsh/vendor-completions /usr/share/fish/vendor_completions.d | tr "\n" " "; echo
    capsule-launch --version; capsulec --version | head -1')
echo "$out"
expect_in "the image's user" "uid 1000 home /home/capsule" "$out"
expect_in "the user's home" "home writable" "$out"
for f in "bin capsule" "bin capsulec" "bin capsule-launch" capsule.1.gz capsulec.1.gz capsule-launch.1.gz \
    capsule-run.1.gz capsulec-build.1.gz _capsule _capsulec capsule.fish capsulec.fish; do
    expect_in "the image's files" "$f" "$out"
done
container=$(docker create capsule)
for f in capsule capsulec capsule-launch; do
    docker cp -q "$container:/usr/local/bin/$f" "$work/$f.bin" 2>/dev/null || docker cp "$container:/usr/local/bin/$f" "$work/$f.bin"
    if readelf -S "$work/$f.bin" | grep -q '\.symtab'; then fail "$f is not stripped"; fi
    echo "$f: $(stat -c %s "$work/$f.bin") bytes, stripped"
done
docker rm "$container" >/dev/null

echo
echo "docker-test: passed in $(($(date +%s) - start)) s; image $((size / 1000000)) MB"
