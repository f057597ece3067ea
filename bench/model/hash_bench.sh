#!/usr/bin/env bash
# Side-by-side hashing benchmark: ours (mm_hash_bench) against b3sum,
# openssl and sha256sum on one file of random data held in the page cache.
#
#   bench/model/hash_bench.sh [path/to/mm_hash_bench] [size_mib]
#
# Prints, for each pair, the best wall and CPU seconds of three runs and the
# ratios peer/ours (above 1: ours is faster). Targets: blake3_multi >= 0.8x b3sum,
# blake3_single >= 0.5x `b3sum --num-threads 1`, sha256 >= 0.9x openssl.
set -euo pipefail

bench_tool=${1:-build/default/bench/model/mm_hash_bench}
size_mib=${2:-2048}
runs=3

for tool in "$bench_tool" b3sum openssl sha256sum bc /usr/bin/time; do
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "$tool" ]]; then
    echo "missing $tool (build mm_hash_bench; apt install b3sum openssl coreutils)" >&2
    exit 1
  fi
done

workdir=$(mktemp -d /tmp/mm-hash-bench-XXXXXX)
trap 'rm -rf "$workdir"' EXIT
file=$workdir/data.bin
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$file"
cat "$file" >/dev/null  # into the page cache

# "<wall> <cpu>": the best of $runs wall times and the best CPU time (user
# + system) of a command, in seconds. CPU time is the fairer figure on a
# machine shared with other work, where wall time measures the queue.
best_of() {
  local best_wall="" best_cpu="" times
  times=$(mktemp "$workdir/times-XXXXXX")
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %U %S' -o "$times" "$@" >/dev/null
    read -r wall user sys <"$times"
    local cpu
    cpu=$(echo "$user + $sys" | bc -l)
    if [[ -z $best_wall ]] || (($(echo "$wall < $best_wall" | bc -l))); then
      best_wall=$wall
    fi
    if [[ -z $best_cpu ]] || (($(echo "$cpu < $best_cpu" | bc -l))); then
      best_cpu=$cpu
    fi
  done
  printf '%.2f %.2f' "$best_wall" "$best_cpu"
}

# Checks that ours and the peer print the same digest before timing them.
check_same() {
  local ours=$1 peer=$2
  if [[ ${ours#*:} != "$peer" ]]; then
    echo "DIGEST MISMATCH: ours $ours, peer $peer" >&2
    exit 1
  fi
}

check_same "$("$bench_tool" blake3_single "$file" | cut -d' ' -f1)" \
  "$(b3sum --no-names "$file")"
check_same "$("$bench_tool" blake3_multi "$file" | cut -d' ' -f1)" \
  "$(b3sum --no-names "$file")"
check_same "$("$bench_tool" sha256 "$file" | cut -d' ' -f1)" \
  "$(sha256sum "$file" | cut -d' ' -f1)"

printf '%s MiB of random data, %s CPUs, best of %s runs; load average %s\n' \
  "$size_mib" "$(nproc)" "$runs" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%-14s %6s %6s  %-22s %6s %6s  %9s %9s\n' ours wall cpu peer wall cpu \
  peer/ours peer/ours
printf '%-14s %6s %6s  %-22s %6s %6s  %9s %9s\n' "" s s "" s s wall cpu
row() {
  local name=$1 peer_name=$3
  read -r ours_wall ours_cpu <<<"$2"
  read -r peer_wall peer_cpu <<<"$4"
  printf '%-14s %6s %6s  %-22s %6s %6s  %9.2f %9.2f\n' "$name" "$ours_wall" \
    "$ours_cpu" "$peer_name" "$peer_wall" "$peer_cpu" \
    "$(echo "$peer_wall / $ours_wall" | bc -l)" \
    "$(echo "$peer_cpu / $ours_cpu" | bc -l)"
}

single=$(best_of "$bench_tool" blake3_single "$file" 1)
b3_single=$(best_of b3sum --num-threads 1 "$file")
row blake3_single "$single" "b3sum --num-threads 1" "$b3_single"

multi=$(best_of "$bench_tool" blake3_multi "$file" 0)
b3_multi=$(best_of b3sum "$file")
row blake3_multi "$multi" b3sum "$b3_multi"

sha=$(best_of "$bench_tool" sha256 "$file")
openssl_sha=$(best_of openssl dgst -sha256 "$file")
coreutils_sha=$(best_of sha256sum "$file")
row sha256 "$sha" "openssl dgst -sha256" "$openssl_sha"
row sha256 "$sha" sha256sum "$coreutils_sha"
