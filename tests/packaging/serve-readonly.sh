#!/usr/bin/env bash
# Runs an installed statusgate the way its packages run it in production, and checks that it
# serves: as user 65532 (no root, no capability, no supplementary group), with the whole root
# file system read-only but for a tmpfs on /run/statusgate (systemd's RuntimeDirectory=, a
# container's tmpfs or emptyDir), which holds the graceful-upgrade socket.
#
# Usage, as root, inside a mount namespace of its own (the caller runs it under
# `unshare -m --propagation private`; no mount made here is seen outside):
#   serve-readonly.sh MODE ROOT LISTEN_PORT ADMIN_PORT
# MODE: `setpriv` (ROOT has the host's tools: an overlay of / with the Debian package
# installed) or `chroot` (ROOT holds statusgate and its libraries only: the image's file
# system). ROOT/etc/statusgate/statusgate.yaml listens on 127.0.0.1:LISTEN_PORT, its admin on
# 127.0.0.1:ADMIN_PORT, its upstream is served by the caller, its upgrade_sock is
# /run/statusgate/upgrade.sock and its grace period is short.
#
# Checks, each printed as `ok: ...`: the root is read-only; `statusgate check`; `run` answers
# through the gateway and on /readyz; a graceful upgrade over /run/statusgate/upgrade.sock
# (a second `run --upgrade` takes the listening socket over, SIGQUIT to the first) keeps
# answering; SIGTERM ends the second with status 0.
set -euo pipefail
mode=$1 root=$2 listen=$3 admin=$4
cfg=/etc/statusgate/statusgate.yaml
fail() { echo "FAILED: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# The view a container runtime or systemd gives: /proc, /dev and the resolver files, then the
# root made read-only (a read-only bind of ROOT onto itself) and the one writable tmpfs.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -o remount,bind,ro "$root"
mount -t tmpfs -o mode=0750,uid=65532,gid=65532,size=1m statusgate-run "$root/run/statusgate"

touch "$root/etc/statusgate/probe" 2>/dev/null && fail "the root file system is writable"
touch "$root/tmp/probe" 2>/dev/null && fail "/tmp is writable"
ok "the root file system is read-only (even for root), /run/statusgate is a tmpfs of 65532"

# As 65532, no capabilities, no groups; `setpriv` as systemd's unit does it (NoNewPrivileges,
# the bounding set), `chroot --userspec` where the root has no setpriv (the image).
# A command, not a function, so that `$!` of a background run is statusgate's own pid (both
# chroot and setpriv exec what they run).
# The environment is the one systemd or the image gives (PATH only), not this shell's.
chroot=$(command -v chroot)
if [ "$mode" = setpriv ]; then
  as_gateway=(env -i PATH=/usr/bin:/bin "$chroot" "$root" setpriv --reuid 65532 --regid 65532
    --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs)
else
  as_gateway=(env -i PATH=/usr/bin "$chroot" --userspec=65532:65532 --groups=65532 "$root")
fi

if [ "$mode" = setpriv ]; then
  "${as_gateway[@]}" touch /run/statusgate/probe || fail "65532 cannot write /run/statusgate"
  "${as_gateway[@]}" rm /run/statusgate/probe
  "${as_gateway[@]}" touch /var/tmp/probe 2>/dev/null && fail "65532 can write /var/tmp"
  ok "user 65532 writes /run/statusgate and nothing else it tried"
fi

"${as_gateway[@]}" /usr/bin/statusgate check -c "$cfg" || fail "statusgate check -c $cfg"
ok "statusgate check -c $cfg as 65532"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Polls (every 0.1 s, at most 20 s) until `$@` succeeds.
until_ok() {
  for _ in $(seq 200); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
get() { curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$1"; }
served() { [ "$(get "http://127.0.0.1:$listen/hello.txt")" = 200 ]; }

log=$(mktemp)
"${as_gateway[@]}" /usr/bin/statusgate run -c "$cfg" >"$log" 2>&1 &
first=$!
pids+=("$first")
until_ok served || { cat "$log" >&2; fail "run: no 200 through the gateway"; }
body=$(curl -sS --max-time 5 "http://127.0.0.1:$listen/hello.txt")
[ "$body" = "hello from the upstream" ] || fail "unexpected body: $body"
until_ok test "$(get "http://127.0.0.1:$admin/readyz")" = 200 || fail "/readyz is not 200"
problem=$(curl -sS --max-time 5 "http://127.0.0.1:$listen/missing")
case "$problem" in
  *'"status":404'*'"upstream_status":404'*) ;;
  *) fail "no canonical problem body for the upstream's 404: $problem" ;;
esac
ok "run as 65532 serves through the gateway (200, and the 404 problem body of the installed rules), /readyz 200"

# Graceful upgrade: the new process waits on the upgrade socket, the old one hands over.
log2=$(mktemp)
"${as_gateway[@]}" /usr/bin/statusgate run --upgrade -c "$cfg" >"$log2" 2>&1 &
second=$!
pids+=("$second")
until_ok test -S "$root/run/statusgate/upgrade.sock" || { cat "$log2" >&2; fail "no upgrade socket"; }
kill -QUIT "$first"
for _ in $(seq 100); do kill -0 "$first" 2>/dev/null || break; sleep 0.1; done
kill -0 "$first" 2>/dev/null && fail "the first process did not exit after SIGQUIT"
served || { cat "$log" "$log2" >&2; fail "no 200 after the graceful upgrade"; }
ok "graceful upgrade through /run/statusgate/upgrade.sock: the new process serves, the old one exited"

kill -TERM "$second"
status=0
wait "$second" || status=$?
[ "$status" = 0 ] || { cat "$log2" >&2; fail "SIGTERM: exit status $status"; }
pids=()
ok "SIGTERM: exit status 0"
