#!/bin/bash
# e2e_soak.sh - the short version of bench/soak.sh (mixed load against one
# server with clip-tiny): CLIPDEX_SOAK_SECONDS (default 120) of searches of
# every kind, uploads, deletions, thumbnails, stats and metrics from 4
# clients; no 5xx, RSS growth within the limit, every upload searchable and
# every deletion gone, check passes afterwards.  Skips (77) without
# ../shared.
set -u
BIN=${CLIPDEX_BIN:?}
SHARED=${CLIPDEX_SHARED:-}
SRC=${CLIPDEX_SRC:?}
[ -d "$SHARED/fixtures/clip-tiny" ] && [ -d "$SHARED/data/imagenet-sample" ] && [ -d "$SHARED/data/formats" ] \
  || { echo "SKIP: ../shared absent"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 absent"; exit 77; }
CLIPDEX_BIN=$BIN CLIPDEX_SHARED=$SHARED bash "$SRC/bench/soak.sh" \
  --duration "${CLIPDEX_SOAK_SECONDS:-120}" --clients 4 --interval 5 || { echo "FAIL: soak"; exit 1; }
echo "PASS"
