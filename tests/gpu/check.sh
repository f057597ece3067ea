#!/usr/bin/env bash
# GPU check of the loader's VRAM tier, for a machine with a CUDA device:
# builds with -DMM_WITH_CUDA=ON into build/gpu, runs the loader's unit tests
# (VRAM policy on the fake device included), then starts mm-records and
# mm-loader on a 256 MiB model and runs tests/gpu/vram_check, a client
# process that opens the cudaIpcMemHandle_t, compares every tensor's bytes
# with the RAM tier's, and prints host-to-device GB/s beside cudaMemcpy of a
# pinned buffer. Exit 0 when everything passed.
#
#   tests/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
nvidia-smi -L
build=build/gpu
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMM_WITH_CUDA=ON -DMM_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target mm mm-records mm-loader vram_check \
  loader_vram_tier_test loader_ram_tier_test loader_model_cache_test
for t in vram_tier ram_tier model_cache; do
  "$build/tests/loader_${t}_test" --gtest_brief=1
done

work=$(mktemp -d)
cleanup() {
  kill "${loader_pid:-}" "${records_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/models"
# A 256 MiB safetensors file of random F32 tensors (8 x 32 MiB).
/usr/bin/python3 - "$work/models/m.safetensors" <<'PY'
import json, os, struct, sys
n, size = 8, 32 << 20
header = {f"t{i}": {"dtype": "F32", "shape": [size // 4],
                    "data_offsets": [i * size, (i + 1) * size]} for i in range(n)}
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[1], "wb") as out:
    out.write(struct.pack("<Q", len(text)) + text)
    for _ in range(n):
        out.write(os.urandom(size))
PY
"$build/services/records/mm-records" --listen "unix:$work/records.sock" \
  --db "sqlite:$work/records.db" >"$work/records.log" 2>&1 &
records_pid=$!
"$build/services/loader/mm-loader" --listen "unix:$work/loader.sock" \
  --records "unix:$work/records.sock" --models-dir "$work/models" \
  --ram-cache 1GiB --vram-cache 1GiB --shm-name-log "$work/shm.list" \
  >"$work/loader.log" 2>&1 &
loader_pid=$!
for _ in $(seq 100); do
  [[ -S "$work/records.sock" && -S "$work/loader.sock" ]] && break
  sleep 0.1
done
hash="blake3:$(printf '%064d' 0)"
key=$("$build/cli/mm" --records "unix:$work/records.sock" --json models add - <<JSON | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
{"hash": "$hash", "path": "m.safetensors", "file_size": 1, "name": "gpu check",
 "source": "m.safetensors", "source_type": "path", "type": "vae",
 "format": "checkpoint", "base": "sd-1"}
JSON
)
grep -E 'VRAM tier|no VRAM tier' "$work/loader.log"
"$build/tests/vram_check" "unix:$work/loader.sock" "$key"
echo "gpu check: OK"
