#!/usr/bin/env bash
# e2e_package.sh - the Debian package: scripts/package.sh builds it from the
# tested binary, apt installs it on this machine, and the installed files
# work: `clipdex` on the PATH, man pages, the clipdex user and
# /var/lib/clipdex, the systemd unit (systemd-analyze verify), and index,
# search and serve run as the service user with the settings of
# /etc/clipdex/clipdex.conf.  Then `apt-get purge` removes it cleanly.
#
# Changes the system, so it runs only as root, and skips when a clipdex
# package that this test did not install is present.
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
BIN=${CLIPDEX_BIN:?}
SRC=${CLIPDEX_SRC:?}
SHARED=${CLIPDEX_SHARED:-}
[ "$(id -u)" = 0 ] || skip "needs root (installs a package)"
for t in apt-get dpkg-deb dpkg-shlibdeps help2man runuser; do
  command -v "$t" >/dev/null || skip "$t is missing"
done
[ -d "$SHARED/fixtures/clip-tiny" ] || skip "../shared is absent"
if dpkg-query -W -f='${Status}' clipdex 2>/dev/null | grep -q 'ok installed'; then
  skip "a clipdex package is already installed; not touching it"
fi
T=$(mktemp -d)
chmod 755 "$T"
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  apt-get purge -y -qq clipdex >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

deb=$("$SRC/scripts/package.sh" --binary "$BIN" --out "$T/dist" | tail -1)
[ -f "$deb" ] || fail "package.sh made no package"
info=$(dpkg-deb -I "$deb")
grep -q 'Depends: .*libvips' <<<"$info" || fail "dependencies not computed"
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$deb" >"$T/apt.log" 2>&1 \
  || { cat "$T/apt.log"; fail "apt-get install"; }

# installed files
[ "$(/usr/bin/clipdex --version)" = "$("$BIN" --version)" ] || fail "installed binary version"
[ -f /usr/share/man/man1/clipdex.1.gz ] && [ -f /usr/share/man/man1/clipdex-serve.1.gz ] || fail "man pages"
grep -q -- 'library' <<<"$(zcat /usr/share/man/man1/clipdex-index.1.gz)" || fail "man page content"
[ -f /etc/clipdex/clipdex.conf ] && [ -f /lib/systemd/system/clipdex.service ] || fail "config and unit"
getent passwd clipdex >/dev/null || fail "system user"
[ "$(stat -c %U /var/lib/clipdex)" = clipdex ] || fail "/var/lib/clipdex owner"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /lib/systemd/system/clipdex.service 2>"$T/verify.err" ||
    { cat "$T/verify.err"; fail "systemd-analyze verify"; }
fi

# index and search as the service user, into the configured library
cp -r "$SHARED/fixtures/clip-tiny" "$T/model"
cp -r "$SHARED/data/formats" "$T/photos"
chmod -R a+rX "$T"
set -a
# shellcheck disable=SC1091
. /etc/clipdex/clipdex.conf
set +a
runuser -u clipdex -- /usr/bin/clipdex index --library "$CLIPDEX_LIBRARY" --model "$T/model" "$T/photos" \
  >"$T/index.out" 2>&1 || { cat "$T/index.out"; fail "index as clipdex"; }
runuser -u clipdex -- /usr/bin/clipdex search --library "$CLIPDEX_LIBRARY" --json -k 3 "a cat" >"$T/search.json" \
  || fail "search as clipdex"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==3, r' "$T/search.json" \
  || fail "search results"

# serve with the unit's command line (port 0: any free port)
runuser -u clipdex -- /usr/bin/clipdex serve --library "$CLIPDEX_LIBRARY" --host "$CLIPDEX_HOST" \
  --port 0 --access-log off $CLIPDEX_SERVE_ARGS >"$T/serve.out" 2>"$T/serve.err" &
server_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/^listening on //p' "$T/serve.out")
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$T/serve.err"; fail "serve did not start"; }
grep -q '"ok"' <<<"$(curl -fsS "$url/api/health")" || fail "health"
curl -fsS "$url/api/search?q=a%20dog&k=2" | python3 -c 'import json,sys; assert len(json.load(sys.stdin)["results"])==2' \
  || fail "search over HTTP"
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=

# removal
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 purge -y -qq clipdex >"$T/purge.log" 2>&1 \
  || { cat "$T/purge.log"; fail "apt-get purge"; }
for f in /usr/bin/clipdex /etc/clipdex/clipdex.conf /lib/systemd/system/clipdex.service \
         /usr/share/man/man1/clipdex.1.gz /var/lib/clipdex; do
  [ ! -e "$f" ] || fail "$f is left after purge"
done
echo PASS
