#!/usr/bin/env bash
# Runs the test suite N times while other processes keep every CPU busy, and
# prints each test case that failed at least once with its failure count.
# Run it before submitting a change that touches threads, timers, leases or
# streams (docs/testing.md): a race that fails one run in ten passes a single
# CI run most days.
#
#   scripts/flake-hunt.sh                   # 20 rounds of every test
#   scripts/flake-hunt.sh -n 50 -R 'downloader_.*'
#   scripts/flake-hunt.sh -p tsan -n 5      # the TSan build
#
# Options:
#   -n N       rounds (default 20)
#   -R REGEX   only the CTest tests (test executables) matching REGEX
#   -p PRESET  build preset whose build folder is used (default `default`);
#              the tests are built first when needed
#   -j JOBS    test executables run at once (default: nproc)
#   -l LOAD    busy-looping processes kept running meanwhile (default:
#              nproc; 0 for none)
# Exits 1 when any test failed in any round, 0 otherwise. Reports of every
# round stay under build/flake-hunt/ (GoogleTest XML, CTest logs).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=20
regex=""
preset=default
jobs=$(nproc)
load=$(nproc)
while getopts "n:R:p:j:l:" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    R) regex=$OPTARG ;;
    p) preset=$OPTARG ;;
    j) jobs=$OPTARG ;;
    l) load=$OPTARG ;;
    *) sed -n '2,21p' "$0" >&2; exit 2 ;;
  esac
done

export MM_REQUIRE_POSTGRES=1
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$(nproc)" >/dev/null
build=build/$preset  # every preset's binaryDir (CMakePresets.json)

out=build/flake-hunt
rm -rf "$out"
mkdir -p "$out"

# The load: busy loops, ended with this script however it ends.
loaders=()
cleanup() {
  if ((${#loaders[@]} > 0)); then kill "${loaders[@]}" 2>/dev/null || true; fi
}
trap cleanup EXIT
for ((i = 0; i < load; i++)); do
  sh -c 'while :; do :; done' &
  loaders+=($!)
done

ctest_args=(--preset "$preset" -j "$jobs" --timeout 900)
[[ -n "$regex" ]] && ctest_args+=(-R "$regex")
start=$(date +%s)
for ((round = 1; round <= rounds; round++)); do
  dir="$out/round-$round"
  mkdir -p "$dir"
  status=ok
  # CTest leaves the list of a failed run in place after a clean one.
  rm -f "$build/Testing/Temporary/LastTestsFailed.log"
  if ! GTEST_OUTPUT="xml:$PWD/$dir/" ctest "${ctest_args[@]}" >"$dir/ctest.log" 2>&1; then
    status=FAILED
    cp "$build/Testing/Temporary/LastTestsFailed.log" "$dir/" 2>/dev/null || true
  fi
  echo "flake-hunt: round $round/$rounds $status ($(($(date +%s) - start)) s so far)"
done
cleanup
loaders=()

# A test case counts once per round it failed in; an executable that failed
# in CTest without a failing case in its report (a crash, a timeout, a
# failure outside any case) counts under its own name.
python3 - "$out" "$rounds" <<'PY'
import collections, glob, os, re, sys
import xml.etree.ElementTree as ET
out, rounds = sys.argv[1], int(sys.argv[2])
failures = collections.Counter()
cases = 0
for round_dir in sorted(glob.glob(os.path.join(out, "round-*"))):
    failed_exes = set()
    log = os.path.join(round_dir, "LastTestsFailed.log")
    if os.path.exists(log):
        for line in open(log):
            name = line.strip().split(":", 1)[-1]
            if name:
                failed_exes.add(name)
    for path in glob.glob(os.path.join(round_dir, "*.xml")):
        exe = os.path.basename(path)[:-4]
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        had_case = False
        for case in root.iter("testcase"):
            cases += 1
            if case.find("failure") is not None:
                failures[f"{exe}: {case.get('classname')}.{case.get('name')}"] += 1
                had_case = True
        if had_case:
            failed_exes.discard(exe)
    for exe in failed_exes:
        failures[f"{exe} (crashed, timed out or failed outside a test case)"] += 1
print(f"flake-hunt: {rounds} rounds, {cases} test case runs")
if not failures:
    print("flake-hunt: no test failed")
    sys.exit(0)
for name, count in failures.most_common():
    print(f"  {count:3d}/{rounds}  {name}")
sys.exit(1)
PY
