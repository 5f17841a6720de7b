#!/usr/bin/env bash
# e2e_container.sh - the container image (packaging/Containerfile), built
# and inspected without starting a container (none can run here):
#  1. a Debian 12 base image made locally: debootstrap --variant=minbase
#     bookworm + podman import (kept as localhost/clipdex-base:bookworm for
#     later runs);
#  2. podman build --isolation=chroot of the multi-stage Containerfile;
#  3. podman image mount + chroot: `clipdex --version`, then an index and a
#     search with the tiny model run inside the image's root file system as
#     its user; the runtime image holds no compiler; the image's entry point
#     and command are the documented ones.
# Opt-in (CLIPDEX_CONTAINER_TEST=1: it takes 5-15 minutes, too long for
# every run of the test command).  Skips with a message where podman or
# debootstrap is missing, or not root.
set -euo pipefail
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
SRC=${CLIPDEX_SRC:?}
SHARED=${CLIPDEX_SHARED:-}
[ "${CLIPDEX_CONTAINER_TEST:-0}" = 1 ] ||
  skip "set CLIPDEX_CONTAINER_TEST=1 to build the container image (debootstrap + podman build: 5-15 minutes)"
[ "$(id -u)" = 0 ] || skip "needs root (podman image mount, chroot)"
command -v podman >/dev/null || skip "podman is missing (apt-get install podman)"
command -v debootstrap >/dev/null || skip "debootstrap is missing (apt-get install debootstrap)"
[ -d "$SHARED/fixtures/clip-tiny" ] || skip "../shared is absent"
BASE=localhost/clipdex-base:bookworm
IMG=localhost/clipdex:e2e-$$
T=$(mktemp -d /var/tmp/clipdex-ct.XXXXXX)
mnt=
cleanup() {
  [ -n "$mnt" ] && podman image umount "$IMG" >/dev/null 2>&1 || true
  podman rmi -f "$IMG" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

if ! podman image exists "$BASE"; then
  echo "making the base image with debootstrap (minbase bookworm)"
  debootstrap --variant=minbase bookworm "$T/rootfs" http://deb.debian.org/debian >"$T/debootstrap.log" 2>&1 ||
    { tail -20 "$T/debootstrap.log"; fail "debootstrap"; }
  tar -C "$T/rootfs" -c . | podman import - "$BASE" >/dev/null || fail "podman import"
  rm -rf "$T/rootfs"
fi

echo "building the image"
podman build --isolation=chroot --build-arg BASE="$BASE" -f "$SRC/packaging/Containerfile" \
  -t "$IMG" "$SRC" >"$T/build.log" 2>&1 || { tail -40 "$T/build.log"; fail "podman build"; }

ep=$(podman image inspect "$IMG" --format '{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}')
echo "entrypoint/cmd/user: $ep"
grep -q '"/usr/bin/clipdex"' <<<"$ep" && grep -q '"serve"' <<<"$ep" && grep -q 'clipdex$' <<<"$ep" ||
  fail "entry point, command or user"

mnt=$(podman image mount "$IMG")
[ -x "$mnt/usr/bin/clipdex" ] || fail "no /usr/bin/clipdex in the image"
for cc in gcc cc cmake; do [ ! -e "$mnt/usr/bin/$cc" ] || fail "the runtime image ships $cc"; done
mkdir -p "$T/work"
cp -r "$SHARED/fixtures/clip-tiny" "$T/work/model"
cp -r "$SHARED/data/formats" "$T/work/photos"
chmod -R a+rwX "$T/work"
# A private mount namespace: the bind mounts vanish with it.
unshare -m --propagation private bash -euo pipefail -c '
  root=$1; work=$2
  mount --bind "$work" "$root/tmp"
  mount -t proc proc "$root/proc"
  chroot "$root" /usr/bin/clipdex --version
  chroot --userspec=clipdex:clipdex "$root" /usr/bin/clipdex index --library /tmp/lib \
    --model /tmp/model /tmp/photos
  chroot --userspec=clipdex:clipdex "$root" /usr/bin/clipdex search --library /tmp/lib --json -k 3 "a cat" \
    >"$work/search.json"
' _ "$mnt" "$T/work" >"$T/run.log" 2>&1 || { cat "$T/run.log"; fail "running clipdex inside the image"; }
head -1 "$T/run.log"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; assert len(r)==3, r' "$T/work/search.json" ||
  fail "search inside the image"
echo "image size: $(podman image inspect "$IMG" --format '{{.Size}}') bytes"
echo PASS
