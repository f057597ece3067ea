#!/usr/bin/env bash
# Builds the libFuzzer targets with the `fuzz` preset (clang, ASan+UBSan)
# and runs each one for a bounded time on a copy of its seed corpus
# (tests/fuzz/corpus/<name>/), so the checked-in seeds never change.
#
#   scripts/fuzz.sh                      # every tests/fuzz/*_fuzzer.cc
#   FUZZ_SECONDS=60 scripts/fuzz.sh gguf_fuzzer zip_fuzzer
#
# Environment:
#   FUZZ_SECONDS          time per fuzzer (default 20)
#   FUZZ_BUILD_DIR        build tree (default build/fuzz, the preset's)
#   FUZZ_SKIP_CONFIGURE   1 to reuse an already configured FUZZ_BUILD_DIR
#   FUZZ_ARTIFACTS        where crash inputs go (default build/fuzz-artifacts)
#
# Exits non-zero when a fuzzer crashes, leaks, times out or fails to build;
# the crashing input is kept in FUZZ_ARTIFACTS: turn it into a regression
# test.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
build=${FUZZ_BUILD_DIR:-$root/build/fuzz}
artifacts=${FUZZ_ARTIFACTS:-$root/build/fuzz-artifacts}

if (($# > 0)); then
  fuzzers=("$@")
else
  fuzzers=()
  for source in "$root"/tests/fuzz/*_fuzzer.cc; do
    fuzzers+=("$(basename "$source" .cc)")
  done
fi

if [[ "${FUZZ_SKIP_CONFIGURE:-0}" != 1 ]]; then
  (cd "$root" && cmake --preset fuzz -B "$build")
fi
cmake --build "$build" --target "${fuzzers[@]}" -j "${FUZZ_JOBS:-2}"

mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
for name in "${fuzzers[@]}"; do
  binary=$(find "$build" -type f -name "$name" -perm -u+x | head -n 1)
  if [[ -z "$binary" ]]; then
    echo "fuzz: $name was not built" >&2
    failed+=("$name")
    continue
  fi
  corpus="$work/$name"
  mkdir -p "$corpus"
  if [[ -d "$root/tests/fuzz/corpus/$name" ]]; then
    cp -r "$root/tests/fuzz/corpus/$name/." "$corpus/"
  fi
  echo "fuzz: running $name for ${seconds}s"
  if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
      "$corpus" >"$work/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; last lines of its log:" >&2
    tail -n 40 "$work/$name.log" >&2
    failed+=("$name")
  else
    grep -E '^stat::number_of_executed_units|^stat::new_units_added' \
      "$work/$name.log" | sed "s/^/fuzz: $name /" || true
  fi
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: failures: ${failed[*]} (inputs in $artifacts)" >&2
  exit 1
fi
echo "fuzz: all ${#fuzzers[@]} fuzzers ran ${seconds}s without a crash"
