#!/bin/bash
# The macOS escape checks: each attack is first shown to work without the sandbox,
# then shown to fail under macos.sb built from the built-in default policy, applied
# as the launcher applies it (/usr/bin/sandbox-exec by absolute path, the verified
# profile text with -p, the three parameters bound to resolved paths). A positive control shows the profile loads and
# lets the workspace be written, so a failure inside is the sandbox's doing. Then the
# launcher path: capsule-launch and capsule run (target/debug, built by the workflow).
#
# Usage (on a Mac, from the repository root): .github/macos-escapes.sh
# Exit 0 when every attack worked outside and failed inside.
set -u
CAPSULEC=${CAPSULEC:-target/debug/capsulec}
OUT=$(mktemp -d)/artifacts
"$CAPSULEC" build cli/src/default-policy.yaml --target macos -o "$OUT" >/dev/null || exit 2
PROFILE=$(cd "$OUT" && pwd -P)/macos.sb
HOME_REAL=$(cd "$HOME" && pwd -P)
TMP_REAL=$(cd "${TMPDIR:-/tmp}" && pwd -P)
WS="$HOME_REAL/capsule-ws-$$"
mkdir -p "$WS" && WS=$(cd "$WS" && pwd -P)

sandboxed_with() { # PROFILE COMMAND...
  local profile=$1; shift
  # PROXY_PORT: read by the profiles of policies with `network: domains:`/`routes:`.
  (cd "$WS" && /usr/bin/sandbox-exec -p "$(cat "$profile")" -D "WORKSPACE=$WS" -D "HOME=$HOME_REAL" -D "TMPDIR=$TMP_REAL" -D PROXY_PORT=3128 "$@")
}
sandboxed() { sandboxed_with "$PROFILE" "$@"; }

failures=0
check() { # NAME COMMAND...: works outside, fails inside
  local name=$1; shift
  if ! (cd "$WS" && "$@") >/dev/null 2>&1; then
    echo "SETUP FAILED: $name does not work even without the sandbox"; failures=$((failures + 1)); return
  fi
  if sandboxed "$@" >/dev/null 2>&1; then
    echo "ESCAPE: $name works under macos.sb"; failures=$((failures + 1))
  else
    echo "ok: $name is denied under macos.sb (and works outside)"
  fi
}

# Positive control: the profile loads, programs start, the workspace is writable.
if sandboxed /bin/sh -c "echo ok > '$WS/control'" && [ "$(cat "$WS/control")" = ok ]; then
  echo "ok: control: /bin/sh runs under macos.sb and writes the workspace"
else
  echo "CONTROL FAILED: the profile does not load or the workspace is not writable"; exit 1
fi

# Every valid fixture's profile is accepted by the real Seatbelt: the command either
# runs or is refused at exec (a policy that does not let /usr/bin/true run), never
# refused because the profile does not load.
for policy in fixtures/policies/valid/*.yaml; do
  dir=$(mktemp -d)/out
  "$CAPSULEC" build "$policy" --target macos -o "$dir" >/dev/null 2>&1 || continue
  if err=$(sandboxed_with "$dir/macos.sb" /usr/bin/true 2>&1) || [[ "$err" == *execvp* ]]; then
    echo "ok: $policy: macos.sb loads"
  else
    echo "PROFILE REJECTED: $policy: $err"; failures=$((failures + 1))
  fi
done

mkdir -p "$HOME/.ssh" && echo secret > "$HOME/.ssh/capsule-probe"
check "read ~/.ssh" /bin/cat "$HOME/.ssh/capsule-probe"
check "write outside the workspace" /usr/bin/touch "$HOME_REAL/capsule-outside-$$"
rm -f "$HOME_REAL/capsule-outside-$$"
sudo mkdir -p /usr/local/capsule-probe && sudo chmod 777 /usr/local/capsule-probe
check "write /usr/local" /usr/bin/touch /usr/local/capsule-probe/x
rm -f /usr/local/capsule-probe/x
check "connect out (TCP 443)" /usr/bin/nc -z -w 5 1.1.1.1 443
/bin/sleep 600 & OUTSIDE=$!
check "signal a process outside" /bin/kill -CONT "$OUTSIDE"
kill "$OUTSIDE" 2>/dev/null

# The same profile applied by the launcher itself: `capsule-launch` (and `capsule run`,
# the same library call) verifies the folder, runs the command through sandbox-exec and
# writes invocation.start and invocation.end to the log, which must verify.
LAUNCH=${CAPSULE_LAUNCH:-target/debug/capsule-launch}
CAPSULE=${CAPSULE:-target/debug/capsule}
LOG="$HOME_REAL/capsule-log-$$/capsule.log"
launched() { (cd "$WS" && "$LAUNCH" --manifest "$OUT" --workspace "$WS" --log "$LOG" -- "$@"); }
if launched /bin/sh -c "echo ok > '$WS/launched'" && [ "$(cat "$WS/launched")" = ok ]; then
  echo "ok: capsule-launch runs /bin/sh under macos.sb and it writes the workspace"
else
  echo "LAUNCHER FAILED: capsule-launch did not run the control"; failures=$((failures + 1))
fi
if launched /bin/cat "$HOME/.ssh/capsule-probe" >/dev/null 2>&1; then
  echo "ESCAPE: read ~/.ssh works under capsule-launch"; failures=$((failures + 1))
else
  echo "ok: read ~/.ssh is denied under capsule-launch"
fi
if [ "$(grep -c '"invocation.end"' "$LOG")" = 2 ] && "$CAPSULE" verify "$LOG"; then
  echo "ok: both launches are in the log, which verifies"
else
  echo "LOG FAILED: $LOG lacks the launches or does not verify"; failures=$((failures + 1))
fi
if (cd "$WS" && "$CAPSULE" run -- /bin/sh -c "echo ok > '$WS/run'") && [ "$(cat "$WS/run")" = ok ]; then
  echo "ok: capsule run runs /bin/sh under the default policy's macos.sb"
else
  echo "CAPSULE RUN FAILED"; failures=$((failures + 1))
fi

# Network by name (docs/macos.md): the launcher's proxy on 127.0.0.1 and a profile
# that lets the command reach its port only. A listed name through the proxy works; the
# server's address straight, bypassing the proxy, is denied by Seatbelt; the address
# through the proxy is not listed (403).
NET_POLICY="$HOME_REAL/capsule-net-$$.yaml"
cat > "$NET_POLICY" <<'YAML'
version: 1
name: macos-network-by-name
syscalls:
  allow: ["@default", "@basic-io", "@file-system", "@io-event", "@process", "@signal",
          "@timer", "@memory", "@ipc", "@network-io", ioctl, uname, sysinfo, getrusage, umask]
filesystem:
  read: [/usr, /bin, /System, /Library, /private/etc, "${WORKSPACE}"]
  write: ["${WORKSPACE}"]
  execute: [/usr, /bin]
network:
  domains: [localhost]
  proxy: { allow-private: true }
env:
  pass: [PATH, HOME]
YAML
(cd "$WS" && exec python3 -m http.server --bind 127.0.0.1 18765 >/dev/null 2>&1) & SERVER=$!
sleep 2
net_run() { (cd "$WS" && "$CAPSULE" run --policy "$NET_POLICY" -- "$@") >/dev/null 2>&1; }
if ! /usr/bin/curl -sSf -m 5 --noproxy '*' http://127.0.0.1:18765/ >/dev/null; then
  echo "SETUP FAILED: the local HTTP server does not answer"; failures=$((failures + 1))
else
  if net_run /usr/bin/curl -sSf -m 10 http://localhost:18765/; then
    echo "ok: a listed name is reached through the proxy under macos.sb"
  else
    echo "PROXY FAILED: the listed name is not reached through the proxy"; failures=$((failures + 1))
  fi
  if net_run /usr/bin/curl -sSf -m 10 --noproxy '*' http://127.0.0.1:18765/; then
    echo "ESCAPE: a direct connect bypassing the proxy works"; failures=$((failures + 1))
  else
    echo "ok: a direct connect bypassing the proxy is denied (and works outside)"
  fi
  if net_run /usr/bin/curl -sSf -m 10 http://127.0.0.1:18765/; then
    echo "ESCAPE: an unlisted address is reached through the proxy"; failures=$((failures + 1))
  else
    echo "ok: an unlisted address is refused by the proxy"
  fi
fi
kill "$SERVER" 2>/dev/null
rm -f "$NET_POLICY"
rm -rf "$HOME_REAL/capsule-log-$$"
rm -f "$HOME/.ssh/capsule-probe"
rm -rf "$WS"
exit $((failures > 0))
