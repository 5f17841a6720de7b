#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every CTest test,
# then rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer and runs the
# unit tests again.  Set CLIPDEX_SKIP_SANITIZE=1 to skip the second pass.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

jobs=$(nproc)

# Fuzz smoke run: the libFuzzer targets over the parsers of untrusted files,
# a short time each (longer campaigns: see docs/fuzzing.md).
if [ "${CLIPDEX_SKIP_FUZZ:-0}" != 1 ] && command -v clang >/dev/null; then
  echo "== fuzz smoke run"
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLIPDEX_FUZZ=ON >/dev/null
  targets=$(for f in fuzz/fuzz_*.c; do basename "$f" .c; done)
  # shellcheck disable=SC2086
  cmake --build build-fuzz -j "$jobs" --target $targets >/dev/null
  for name in $targets; do
    f=build-fuzz/$name
    corpus=$(mktemp -d)
    seeds=fuzz/seeds/${name#fuzz_}
    [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
    # no -max_len: libFuzzer takes the largest seed (at least 4096 bytes)
    "$f" -max_total_time="${CLIPDEX_FUZZ_SECONDS:-15}" "$corpus" >"build-fuzz/$name.log" 2>&1 \
      || { echo "$name FAILED:"; tail -40 "build-fuzz/$name.log"; exit 1; }
    echo "$name: $(grep -Eo 'Done [0-9]+ runs' "build-fuzz/$name.log" || echo ok)"
    rm -rf "$corpus"
  done
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")

if [ "${CLIPDEX_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizers: ASan + UBSan"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLIPDEX_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
  # oneDNN's JIT and OpenMP runtime keep process-lifetime allocations.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  (cd build-asan && ctest --output-on-failure -j "$jobs" -L unit)
fi
