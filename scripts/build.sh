#!/usr/bin/env bash
# Install dependencies (scripts/setup.sh) and build clipdex into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
echo "built: build/clipdex"
