#!/usr/bin/env bash
# e2e_abi.sh - libclipdex.so exports exactly the public API: every function
# declared in include/clipdex.h is a defined dynamic symbol, and nothing else
# is exported (internal helpers such as catalog_* or walk_* are hidden by
# -fvisibility=hidden; see CDX_API in clipdex.h).
set -euo pipefail
BIN=${CLIPDEX_BIN:?CLIPDEX_BIN not set}
SRC=${CLIPDEX_SRC:?CLIPDEX_SRC not set}
SO=$(dirname "$BIN")/libclipdex.so
[ -f "$SO" ] || { echo "FAIL: $SO not built"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

nm -D --defined-only "$SO" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u > "$T/exported"
[ -s "$T/exported" ] || fail "no exported symbols"
# linker-made symbols are not ours
grep -Ev '^(_init|_fini|_edata|_end|__bss_start)$' "$T/exported" > "$T/ours" || true
if grep -v '^cdx_' "$T/ours" > "$T/stray"; then
    fail "exported symbols outside the public API: $(head -20 "$T/stray" | tr '\n' ' ')"
fi
# every function the header declares (name followed by '(' at the start of a
# declaration) must be exported
python3 - "$SRC/include/clipdex.h" > "$T/declared" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r'/\*.*?\*/', '', src, flags=re.S)
src = re.sub(r'^\s*#.*$', '', src, flags=re.M)
names = set()
for m in re.finditer(r'\b(cdx_[A-Za-z0-9_]+)\s*\(', src):
    # a declaration: the name is preceded by a return type, not by '(' or ','
    before = src[:m.start()].rstrip()
    if before.endswith(('(', ',', '=', 'return')):
        continue
    if re.search(r'typedef[^;]*$', before[-200:]):
        continue
    names.add(m.group(1))
print("\n".join(sorted(names)))
PY
[ "$(wc -l < "$T/declared")" -gt 100 ] || fail "header parse found only $(wc -l < "$T/declared") functions"
missing=$(comm -23 "$T/declared" "$T/ours")
[ -z "$missing" ] || fail "declared in clipdex.h but not exported: $missing"
# an internal symbol is present in the archive but hidden in the .so
nm "$(dirname "$BIN")/libclipdex.a" > "$T/archive" 2>/dev/null || true
grep -q ' T catalog_open$' "$T/archive" || fail "catalog_open not in the static archive (test premise)"
! grep -qx catalog_open "$T/exported" || fail "catalog_open is exported"
# an outside program builds against the header and the .so alone
cat > "$T/prog.c" <<'C'
#include <clipdex.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    cdx_library *lib = NULL;
    cdx_result r = cdx_library_open("/nonexistent/clipdex-abi-test", NULL, &lib);
    printf("%s %s\n", cdx_result_str(r), cdx_last_error());
    return r == CDX_OK || !*cdx_last_error();
}
C
cc -std=c11 -Wall -Werror -I"$SRC/include" "$T/prog.c" -L"$(dirname "$SO")" -lclipdex -o "$T/prog" \
    || fail "an outside program does not build against clipdex.h + libclipdex.so"
LD_LIBRARY_PATH=$(dirname "$SO") "$T/prog" > "$T/prog.out" || fail "outside program: $(cat "$T/prog.out")"
grep -q '^CDX_ERR_' "$T/prog.out" || fail "outside program printed: $(cat "$T/prog.out")"
echo "e2e_abi: $(wc -l < "$T/ours") symbols exported, all declared in clipdex.h ($(wc -l < "$T/declared") declared)"
