#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every CTest test,
# then rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs the
# unit tests again.  Set CLIPDEX_SKIP_SANITIZE=1 to skip the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

if [ "${CLIPDEX_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizers: ASan + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLIPDEX_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  # oneDNN's JIT and OpenMP runtime keep process-lifetime allocations.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:suppressions=$PWD/tests/lsan.supp"
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build-asan && ctest --output-on-failure -j "$jobs" -L unit)
fi
