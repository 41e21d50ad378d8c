#!/usr/bin/env bash
# Installs the Debian package into a throwaway root and checks the installed unit and binary.
# The throwaway root is an overlay of this machine's / whose writes go to a tmpfs: dpkg sees
# the machine's own package database (so the package's Depends are checked for real) and
# systemd's own units, and nothing reaches the machine's root.
#
# Usage, as root, inside a mount namespace of its own (`unshare -m --propagation private`):
#   deb-root.sh DEB WORKDIR LISTEN_PORT ADMIN_PORT UPSTREAM_PORT
# Prints `ok: ...` per check; exits non-zero at the first failure.
set -euo pipefail
deb=$1 work=$2 listen=$3 admin=$4 upstream=$5
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAILED: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

mkdir -p "$work/overlay"
mount -t tmpfs -o size=512m statusgate-overlay "$work/overlay"
mkdir "$work/overlay/upper" "$work/overlay/work" "$work/overlay/root"
root=$work/overlay/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/overlay/upper,workdir=$work/overlay/work" "$root"

# No maintainer scripts (the package has none: it neither creates a user, DynamicUser=yes,
# nor starts the unit), so nothing runs chrooted; --no-triggers: man-db's index update, which
# would run chrooted, is left pending.
dpkg --root="$root" --log=/dev/null --no-triggers -i "$deb" >/dev/null || fail "dpkg --root -i $deb"
dpkg --root="$root" -s statusgate | grep -q '^Status: install ok installed$' || fail "not installed"
conffiles=$(dpkg-query --root="$root" -W -f='${Conffiles}\n' statusgate)
for f in /etc/statusgate/statusgate.yaml /etc/statusgate/rules/canonical.yaml \
  /etc/statusgate/rules/huawei-vpcep.yaml; do
  grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done
ok "dpkg -i into the throwaway root: installed, /etc/statusgate/* are conffiles"

unit=statusgate.service
# Documentation=man:statusgate(1) is checked by running man: on the installed page.
MANPATH="$root/usr/share/man" systemd-analyze verify --root="$root" "$unit" || fail "systemd-analyze verify $unit"
ok "systemd-analyze verify $unit"
# The exposure score of systemd's own review (0 = fully sandboxed, 10 = exposed); the unit
# scores 1.x ("OK"): fail when a change loosens it past 2.
security=$(systemd-analyze security --offline=yes --root="$root" --threshold=20 "$unit" 2>&1) \
  || { echo "$security" >&2; fail "systemd-analyze security: exposure above 2.0"; }
ok "systemd-analyze security --offline: $(echo "$security" | tail -1 | sed 's/^ *//')"

# The installed binary prints its version and the installed man page and completions exist.
chroot "$root" statusgate --version | grep -Eq '^statusgate [0-9.]+ \(revision [0-9a-f]{7,}, built [0-9]{4}-[0-9]{2}-[0-9]{2}\)$' \
  || fail "statusgate --version: $(chroot "$root" statusgate --version)"
for f in usr/share/man/man1/statusgate.1.gz usr/share/man/man1/statusgate-run.1.gz \
  usr/share/bash-completion/completions/statusgate usr/share/zsh/vendor-completions/_statusgate \
  usr/share/fish/vendor_completions.d/statusgate.fish; do
  [ -s "$root/$f" ] || fail "$f is not installed"
done
warnings=$(MANWIDTH=80 man --warnings -l "$root/usr/share/man/man1/statusgate.1.gz" 2>&1 >/dev/null) || fail "man -l"
[ -z "$warnings" ] || fail "man -l warns: $warnings"
chroot "$root" bash -n /usr/share/bash-completion/completions/statusgate || fail "bash -n completions"
ok "installed: $(chroot "$root" statusgate --version), man page, completions"

# An operator's edit of the conffile: loopback ports of this test, the test's upstream, and
# a short grace period; then the production view (serve-readonly.sh).
cfg=$root/etc/statusgate/statusgate.yaml
sed -i -e "s/^listen: 0\.0\.0\.0:8080$/listen: 127.0.0.1:$listen/" \
  -e "s/^admin: 127\.0\.0\.1:9090$/admin: 127.0.0.1:$admin/" \
  -e "s/addrs: \[127\.0\.0\.1:18080\]/addrs: [127.0.0.1:$upstream]/" \
  -e "s/grace_period: 5s /grace_period: 1s /" "$cfg"
for want in "listen: 127.0.0.1:$listen" "admin: 127.0.0.1:$admin" "addrs: \[127.0.0.1:$upstream\]" \
  "grace_period: 1s" "upgrade_sock: /run/statusgate/upgrade.sock"; do
  grep -q "$want" "$cfg" || fail "the installed configuration has no \`$want\`"
done
# RuntimeDirectory= makes /run/statusgate at start; in the overlay it is the tmpfs's mount point.
mkdir -p "$root/run/statusgate"
"$here/serve-readonly.sh" setpriv "$root" "$listen" "$admin"
