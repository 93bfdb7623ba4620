#!/bin/sh
# Runs inside the capsule image (from packaging/docker-test.sh), in /workspace (a
# folder every user may write), with the escape programs of tests/escapes/ compiled
# into /opt/escapes (read-only; the default policy lets the command read /opt). Each attack
# runs first without Capsule (it must escape, unless Docker's own seccomp profile or
# capabilities already stop it: then that is reported) and then under `capsule run`
# and the built-in default policy, where it must be refused with the same errno as in
# tests/tests/escapes.rs. Prints one line per attack; exits 1 if any check failed or
# if fewer than MIN_PROVEN attacks were shown to work without Capsule.
set -u
E=/opt/escapes
LOADER=/lib64/ld-linux-x86-64.so.2
MIN_PROVEN=${MIN_PROVEN:-10}
failed=0 proven=0 docker_blocked=0
out=$(mktemp -d)
outside=$HOME/capsule-escape-outside
mkdir -p "$outside"
printf 'the secret\n' >"$outside/secret"
ln -sf "$outside/secret" /workspace/.escapes-innocent-link 2>/dev/null || true

# The program's verdict: its last ESCAPED, BLOCKED or ERROR line (NOTE lines may come
# first).
verdict() { grep -E '^(ESCAPED|BLOCKED|ERROR) ' "$1" | tail -n1; }

# bare NAME CMD...: run CMD without Capsule; ESCAPED proves the attack.
bare() {
    name=$1
    shift
    "$@" >"$out/bare" 2>"$out/bare.err"
    first=$(verdict "$out/bare")
    case $first in
        ESCAPED*) proven=$((proven + 1)); bare_result="escapes without capsule" ;;
        BLOCKED*) docker_blocked=$((docker_blocked + 1)); bare_result="already stopped by Docker ($first)" ;;
        *) failed=1; bare_result="FAILED without capsule: $(cat "$out/bare" "$out/bare.err")" ;;
    esac
}

# boxed NAME EXPECT CMD...: run CMD under capsule; its verdict must be EXPECT
# (or, for EXPECT=killed, exit status 159: killed by the seccomp filter).
boxed() {
    name=$1 expect=$2
    shift 2
    capsule run "$@" >"$out/boxed" 2>"$out/boxed.err"
    status=$?
    first=$(verdict "$out/boxed")
    case $expect in
        killed) [ "$status" = 159 ] && ok=1 || ok=0 ;;
        *) [ "$first" = "$expect" ] && ok=1 || ok=0 ;;
    esac
    case $bare_result in FAILED*) ok=0 ;; esac
    if [ "$ok" = 1 ]; then
        echo "ok      $name: $bare_result; under capsule: ${first:-exit $status}"
    else
        failed=1
        echo "FAILED  $name: $bare_result; under capsule: exit $status, $first (expected $expect)"
        sed 's/^/        /' "$out/boxed" "$out/boxed.err"
    fi
}

attack() { # NAME EXPECT PROGRAM [ARG...]: the common shape
    name=$1 expect=$2 program=$3
    shift 3
    bare "$name" "$E/$program" "$@"
    boxed "$name" "$expect" "$LOADER" "$E/$program" "$@"
}

attack int80 killed int80
attack io_uring "BLOCKED io_uring_setup ENOSYS" io_uring
attack userfaultfd "BLOCKED userfaultfd EPERM" userfaultfd
attack bpf "BLOCKED bpf-map-create EPERM" bpf
attack perf_event "BLOCKED perf_event_open EPERM" perf_event
attack unshare-newuser "BLOCKED unshare-newuser EPERM" userns unshare
attack clone-newuser "BLOCKED clone-newuser EPERM" userns clone
attack keyring "BLOCKED add_key EPERM" keyring
attack mount "BLOCKED mount EPERM" mount "$outside"
printf 'contents\n' >/workspace/.escapes-handle-me
attack open_by_handle "BLOCKED open_by_handle_at EPERM" open_by_handle /workspace/.escapes-handle-me
attack personality "BLOCKED personality EPERM" personality
attack netlink "BLOCKED socket-netlink EPERM" netlink plain
attack netlink-high-bits "BLOCKED socket-netlink EPERM" netlink high-bits
attack read-outside "BLOCKED open-read EACCES" read_file "$outside/secret"
attack symlink-from-workspace "BLOCKED open-read EACCES" read_file /workspace/.escapes-innocent-link
attack memfd-execveat "BLOCKED execveat EPERM" memfd_exec execveat
attack memfd-proc-fd "BLOCKED execve-proc-fd EACCES" memfd_exec proc-fd

# Writing outside the writable paths: the file must not appear under capsule.
bare write-outside "$E/write_file" "$outside/written"
rm -f "$outside/written"
boxed write-outside "BLOCKED open-write EACCES" "$LOADER" "$E/write_file" "$outside/written"
[ -e "$outside/written" ] && { failed=1; echo "FAILED  write-outside: $outside/written was written under capsule"; }

# Attacks on the parent: without capsule the parent is a throwaway shell.
for pair in "ptrace_parent ptrace-attach" "vm_write process_vm_writev" "kill_parent kill-parent"; do
    program=${pair% *} step=${pair#* }
    bare "$program" sh -c '"$0"; exit $?' "$E/$program"
    boxed "$program" "BLOCKED $step EPERM" "$LOADER" "$E/$program"
done

# The launcher's environment (a token in it) is not readable by the command.
export CAPSULE_TEST_SECRET=s3cret
bare parent_environ sh -c '"$0"; exit $?' "$E/parent_environ"
boxed parent_environ "BLOCKED open-parent-environ EACCES" "$LOADER" "$E/parent_environ"
unset CAPSULE_TEST_SECRET

rm -rf "$out" "$outside" /workspace/.escapes-innocent-link /workspace/.escapes-handle-me
echo "$(id -un): $proven attack(s) shown to work in the container without capsule, $docker_blocked already stopped by Docker, all refused under capsule: $([ $failed = 0 ] && echo yes || echo NO)"
if [ "$proven" -lt "$MIN_PROVEN" ]; then
    echo "FAILED  only $proven attacks worked without capsule (at least $MIN_PROVEN expected): the comparison proves little"
    failed=1
fi
exit $failed
