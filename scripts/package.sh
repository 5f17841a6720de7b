#!/usr/bin/env bash
# Build the Debian package of clipdex: dist/clipdex_<version>_<arch>.deb.
#
#   scripts/package.sh [--build-dir DIR | --binary FILE] [--out DIR]
#
# Contents: /usr/bin/clipdex; man pages made from each command's --help by
# help2man (clipdex(1), clipdex-<command>(1)); the systemd unit
# clipdex.service (sandboxed, user clipdex); /etc/clipdex/clipdex.conf (a
# conffile); /usr/share/doc/clipdex (README, docs).  Maintainer scripts
# create the system user and /var/lib/clipdex (packaging/postinst); purge
# removes /var/lib/clipdex.  Dependencies come from dpkg-shlibdeps.
# Needs: dpkg-dev, help2man (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-pkg
out=dist
binary=
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb dpkg-shlibdeps help2man; do
  command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (apt-get install dpkg-dev help2man)" >&2; exit 1; }
done

if [ -z "$binary" ]; then   # --binary FILE: package an already built (Release) binary
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
  cmake --build "$build" -j "$(nproc)" --target clipdex
  binary=$build/clipdex
fi
binary=$(realpath "$binary")
version=$("$binary" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -D -m 0755 "$binary" "$root/usr/bin/clipdex"

# man pages from --help: the main page and one per command
man=$root/usr/share/man/man1
mkdir -p "$man"
wrappers=$stage/bin
mkdir -p "$wrappers"
help2man --no-info --no-discard-stderr --version-string="$version" \
  --name "semantic image search with CLIP" --output "$man/clipdex.1" "$binary"
"$binary" --help | sed -n 's/^  \([a-z][a-z-]*\)  *\(.*\)$/\1\t\2/p' |
while IFS=$'\t' read -r cmd summary; do
  w=$wrappers/clipdex-$cmd
  printf '#!/bin/sh\n[ "$1" = --version ] && { echo "clipdex-%s %s"; exit 0; }\nexec "%s" %s "$@"\n' \
    "$cmd" "$version" "$(realpath "$binary")" "$cmd" >"$w"
  chmod +x "$w"
  help2man --no-info --no-discard-stderr --name "$summary" --output "$man/clipdex-$cmd.1" "$w" ||
    { echo "package.sh: help2man failed for $cmd" >&2; exit 1; }
done
gzip -9n "$man"/*.1

install -D -m 0644 packaging/clipdex.service "$root/lib/systemd/system/clipdex.service"
install -D -m 0644 packaging/clipdex.conf "$root/etc/clipdex/clipdex.conf"
doc=$root/usr/share/doc/clipdex
install -D -m 0644 README.md "$doc/README.md"
install -d "$doc/docs"
install -m 0644 docs/*.md "$doc/docs/"

# control files
mkdir -p "$root/DEBIAN" "$stage/debian"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo "/etc/clipdex/clipdex.conf" >"$root/DEBIAN/conffiles"
printf 'Source: clipdex\n' >"$stage/debian/control"
deps=$(cd "$stage" && dpkg-shlibdeps -O "root/usr/bin/clipdex" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$deps" ] || { echo "package.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: clipdex
Version: $version
Architecture: $arch
Maintainer: clipdex developers <clipdex@localhost>
Installed-Size: $size
Depends: $deps, adduser
Recommends: tesseract-ocr-eng
Section: graphics
Priority: optional
Description: self-hosted semantic image search with CLIP
 clipdex embeds images with a CLIP model (its own C inference code for
 OpenAI / OpenCLIP ViT models in the Hugging Face layout), keeps them in a
 crash-safe on-disk library and answers text and image queries from the
 command line, a JSON HTTP API and a web page.  The clipdex service
 (systemd) serves one library; see /etc/clipdex/clipdex.conf.
CONTROL
mkdir -p "$out"
deb=$out/clipdex_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
