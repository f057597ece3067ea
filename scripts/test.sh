#!/usr/bin/env bash
# Sets up, builds and runs every test: the normal build, then the ASan+UBSan
# build, then each libFuzzer target for a bounded time. Each test that needs
# PostgreSQL starts its own throwaway cluster (as the `postgres` user when
# run as root). Usage: scripts/test.sh [--quick]  (--quick: normal build only)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

bash scripts/setup.sh

jobs=$(nproc)
run_preset() {
  local preset=$1
  echo "=== build: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "=== test: $preset"
  ctest --preset "$preset" -j "$jobs" --timeout 600
}

start=$(date +%s)
run_preset default
if ((quick == 0)); then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_preset asan
  if [[ -x scripts/fuzz.sh ]]; then
    echo "=== fuzz"
    FUZZ_SECONDS="${FUZZ_SECONDS:-15}" bash scripts/fuzz.sh
  fi
fi
echo "=== all tests passed in $(( $(date +%s) - start )) s"
