#!/usr/bin/env bash
# `mm probe` on a sparse 7 GB SDXL-shaped checkpoint (~2,500 tensors), wall
# time including process start, against reading the file once (what
# hashing or loading it would cost at least; the hole reads as zeros from
# memory, so that side is a lower bound).
# Usage: bench/model/probe_bench.sh [path/to/mm]
set -euo pipefail
mm=${1:-build/default/cli/mm}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/make_sdxl_checkpoint.py" "$dir/sdxl.safetensors"
"$mm" probe "$dir/sdxl.safetensors" --json > "$dir/probe.json"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print('probed:', c['type'], c['format'], c['base'], c['variant'])" "$dir/probe.json"
best=999
for _ in $(seq 10); do
  start=$(date +%s%N)
  "$mm" probe "$dir/sdxl.safetensors" > /dev/null
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  (( ms < best )) && best=$ms
done
echo "mm probe (best of 10, wall, incl. process start): ${best} ms"
start=$(date +%s%N)
cat "$dir/sdxl.safetensors" > /dev/null
echo "reading the file once (cat > /dev/null): $(( ($(date +%s%N) - start) / 1000000 )) ms"
