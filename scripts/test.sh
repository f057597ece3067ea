#!/usr/bin/env bash
# Sets up, builds and runs every test:
#   1. the normal build (every test);
#   2. the ASan+UBSan build (every test);
#   3. the TSan build of the concurrent tests (stores, services, engine,
#      end to end: the CTest names matching $tsan_tests below);
#   4. one clang build of every library and executable with
#      -Wthread-safety -Werror=thread-safety (the `fuzz` preset), which also
#      makes the libFuzzer targets, each then run for a bounded time.
# PostgreSQL is required: each test that needs it starts its own throwaway
# cluster (as the `postgres` user when run as root), and one that cannot
# start fails the run (MM_REQUIRE_POSTGRES=1). Every GoogleTest executable
# writes an XML report; the run ends with the count of passed, failed and
# skipped test cases, and fails when any case was skipped under CI=true.
#
# Usage: scripts/test.sh [--quick]  (--quick: the normal build only)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

bash scripts/setup.sh

export MM_REQUIRE_POSTGRES=1
# A clone elsewhere (CI's) hits the same compiler cache.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true

# The concurrent tests that also run under TSan.
tsan_tests='^(records_record_store_conformance_test|records_records_service_test|common_sql_test|common_jobs_.*|common_metrics_.*|common_clock_test|common_http_fetch_test|installer_.*|cli_download_watch_test|common_http_transfer_loop_test|common_http_test_server_test|common_http_fake_hf_hub_test|common_server_test|downloader_.*|cli_supervisor_test|loader_model_cache_test|loader_loader_service_test|loader_dtype_conversion_test|loader_vram_tier_test|e2e_.*)$'

reports=build/test-reports
rm -rf "$reports"
mkdir -p "$reports"

jobs=$(nproc)
# run_preset PRESET [CTEST ARGS...]: configure, build (every target, or
# only the tests named by -R), run.
run_preset() {
  local preset=$1
  shift
  echo "=== build: $preset"
  cmake --preset "$preset" >/dev/null
  if [[ "${1:-}" == "-R" ]]; then
    # Only the selected test executables (and what they need).
    local targets
    targets=$(ctest --preset "$preset" -N -R "$2" | sed -n 's/^ *Test *#[0-9]*: //p')
    # shellcheck disable=SC2086
    cmake --build --preset "$preset" -j "$jobs" --target $targets
  else
    cmake --build --preset "$preset" -j "$jobs"
  fi
  echo "=== test: $preset"
  mkdir -p "$reports/$preset"
  GTEST_OUTPUT="xml:$PWD/$reports/$preset/" \
    ctest --preset "$preset" -j "$jobs" --timeout 900 "$@"
}

start=$(date +%s)
run_preset default
if ((quick == 0)); then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_preset asan
  run_preset tsan -R "$tsan_tests"
  echo "=== build: fuzz (clang, -Wthread-safety -Werror=thread-safety)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$jobs"
  echo "=== fuzz"
  FUZZ_SKIP_CONFIGURE=1 FUZZ_SECONDS="${FUZZ_SECONDS:-15}" bash scripts/fuzz.sh
fi

# Counts from the GoogleTest reports: <testcase> elements, those with a
# <failure>, those with a <skipped>.
python3 - "$reports" <<'PY'
import glob, os, sys
import xml.etree.ElementTree as ET
passed = failed = 0
skipped = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*", "*.xml"))):
    build = os.path.basename(os.path.dirname(path))
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{build}: {case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None:
            failed += 1
        elif case.find("skipped") is not None or case.get("result") == "skipped":
            skipped.append(name)
        else:
            passed += 1
for name in skipped:
    print(f"skipped: {name}")
print(f"gtest: {passed} passed, {failed} failed, {len(skipped)} skipped")
if os.environ.get("CI") == "true" and skipped:
    print("test.sh: skipped tests under CI=true; every test must run here")
    sys.exit(1)
sys.exit(1 if failed else 0)
PY
echo "=== all tests passed in $(($(date +%s) - start)) s"
