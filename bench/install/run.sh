#!/usr/bin/env bash
# The install benchmark: mm-installer (driven by `mm install --wait`, as a
# user would, with the real mm-records and mm-downloader beside it) against
# the tools it is made of, on one machine, the hub being nginx on
# 127.0.0.1.
#
#   bench/install/run.sh [--work-dir DIR] [--runs N] [--build-dir DIR]
#                        [--weights-mib N] [--checkpoint-mib N]
#
# Cases, each run peer and ours alternately, --runs times (default 3), min
# and median of wall and of CPU time (user + system) reported:
#   a. a Hugging Face repo: an SDXL diffusers pipeline of 10 files, four of
#      them safetensors weights of --weights-mib (default 512, so 2 GiB in
#      all), made by make_repo.py and served by nginx as the hub would
#      (model-info at /api/models/bench/sdxl-synth, files under
#      /bench/sdxl-synth/resolve/<commit>/). Ours: `mm install
#      bench/sdxl-synth --wait` (model-info, one downloader job with the LFS
#      sha256s, probe, blake3 hash, placement, record). Peer: `aria2c -j4`
#      of the same 10 files, then `b3sum` of each.
#   b. a local single-file SD-1 checkpoint of --checkpoint-mib (default
#      2048) on the file system of the models folder. Ours: `mm install
#      FILE --wait` (probe, blake3 hash, rename into models/<key>/, record).
#      Peer: `b3sum FILE`; b1 the same against `b3sum --num-threads 1`
#      (like for like with a one-thread hash; the installer hashes BLAKE3
#      with every core since the multi-threaded hash landed);
#      b2 against `mm hash FILE` (the same hash on one thread, without the
#      install). Each side, peer or ours, gets a fresh `cp` of the
#      checkpoint before its run (ours consumes it; and a freshly written
#      file's page cache is cheaper to map than an old one's, so both must
#      start from the same kind of copy).
#   c. mm-installer's peak resident memory (VmHWM) over each run of a,
#      with RssAnon and RssFile sampled (and VmHWM over each run of b).
# Every run of ours starts a fresh records + downloader + installer (empty
# databases, empty models folder), so the hash is never a duplicate and
# VmHWM covers one install; the start is not timed. Before each run the
# outputs of the last are removed and `sync` flushes what they left dirty.
# The page cache is not dropped: the hub's files and case b's source are
# read from memory by both sides. Both sides use their default settings
# (the downloader fdatasyncs each file before its rename).
#
# Installs nginx, aria2, b3sum, curl and time with apt-get when missing.
# Not part of scripts/test.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=/tmp/mm-install-bench
runs=3
build=$root/build/bench
weights_mib=512
checkpoint_mib=2048

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
  case $1 in
    --work-dir) work=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --weights-mib) weights_mib=$2; shift 2 ;;
    --checkpoint-mib) checkpoint_mib=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

mm=$build/cli/mm
records_bin=$build/services/records/mm-records
downloader_bin=$build/services/downloader/mm-downloader
installer_bin=$build/services/installer/mm-installer
for binary in "$mm" "$records_bin" "$downloader_bin" "$installer_bin"; do
  if [[ ! -x $binary ]]; then
    echo "missing $binary; build it first:" >&2
    echo "  cmake --build $build -j2 --target mm mm-records mm-downloader mm-installer" >&2
    exit 1
  fi
done

# --- tools ------------------------------------------------------------------

PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v aria2c >/dev/null || missing+=(aria2)
command -v b3sum >/dev/null || missing+=(b3sum)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(time)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}..." >&2
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    "${missing[@]}" >/dev/null
fi

# --- state and cleanup ------------------------------------------------------

mkdir -p "$work"
work=$(cd "$work" && pwd)
data=$work/data
hub=$data/hub
peer_out=$work/peer-out
stack=$work/stack
repo=bench/sdxl-synth
nginx_pid=""
records_pid=""
downloader_pid=""
installer_pid=""

stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_stack() {
  stop_pid "$installer_pid"
  stop_pid "$downloader_pid"
  stop_pid "$records_pid"
  installer_pid="" downloader_pid="" records_pid=""
}

cleanup() {
  stop_pid "$sampler_pid"
  stop_stack
  stop_pid "$nginx_pid"
  # Outputs only; the data is kept for the next run.
  rm -rf "$peer_out" "$stack" "$work/nginx" "$work/peer-source.safetensors"
}
trap cleanup EXIT

die() {
  echo "error: $*" >&2
  exit 1
}

# --- data -------------------------------------------------------------------

weights_bytes=$((weights_mib << 20))
checkpoint_bytes=$((checkpoint_mib << 20))
checkpoint=$data/checkpoint.safetensors
stamp=$data/made-with
want_stamp="weights $weights_bytes checkpoint $checkpoint_bytes $(sha256sum "$root/bench/install/make_repo.py" | cut -c1-16)"
if [[ ! -f $stamp || $(<"$stamp") != "$want_stamp" ]]; then
  echo "writing the repo and the checkpoint under $data..." >&2
  rm -rf "$data"
  mkdir -p "$data"
  python3 "$root/bench/install/make_repo.py" "$hub" "$checkpoint" \
    --weights-bytes "$weights_bytes" --checkpoint-bytes "$checkpoint_bytes"
  echo "$want_stamp" >"$stamp"
fi
commit=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sha"])' \
  "$hub/api/models/$repo")
files_root=$hub/$repo/resolve/$commit
mapfile -t repo_files < <(cd "$files_root" && find . -type f -printf '%P\n' | sort)
repo_bytes=$(cd "$files_root" && du -cb --apparent-size "${repo_files[@]}" | tail -n1 | cut -f1)

# --- nginx: the hub ---------------------------------------------------------

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hub_url=http://127.0.0.1:$port
mkdir -p "$work/nginx/tmp"
# As root nginx would hand its workers to `nobody`; keep them ours.
user_line=""
((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
cat >"$work/nginx/nginx.conf" <<CONF
$user_line
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    root $hub;
    # The model-info, whatever the query (?blobs=true), as JSON with the
    # commit header the hub sends.
    location /api/models/ {
      default_type application/json;
      add_header X-Repo-Commit $commit;
    }
  }
}
CONF
nginx -p "$work/nginx" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" &
nginx_pid=$!

# Runs "$@" until it succeeds, for at most 30 s.
await() {
  local deadline=$((SECONDS + 30))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for: $*"
    sleep 0.1
  done
}
await curl -sf -o /dev/null "$hub_url/api/models/$repo?blobs=true"

# The sources come from memory for both sides.
cat "$checkpoint" "${repo_files[@]/#/$files_root/}" >/dev/null

# --- the services -----------------------------------------------------------

models=$stack/models
mm_cli=(env "MM_HOME=$stack/home" "$mm" --records "unix:$stack/records.sock"
  --downloader "unix:$stack/downloader.sock"
  --installer "unix:$stack/installer.sock")

# A fresh records + downloader + installer: empty databases, an empty
# models folder.
start_stack() {
  stop_stack
  rm -rf "$stack"
  mkdir -p "$models" "$stack/home"
  "$records_bin" --listen "unix:$stack/records.sock" \
    --db "sqlite:$stack/records.db" --log-level warning \
    >"$stack/records.log" 2>&1 &
  records_pid=$!
  "$downloader_bin" --listen "unix:$stack/downloader.sock" \
    --db "sqlite:$stack/downloads.db" --download-root "$models" \
    --allow-private-urls --log-level warning >"$stack/downloader.log" 2>&1 &
  downloader_pid=$!
  # The installer starts once both serve: started together, its first
  # call found a socket not yet there and waited out gRPC's reconnect
  # backoff (about 1 s), which is start-up, not install, time.
  await "${mm_cli[@]}" downloads list
  await "${mm_cli[@]}" models list
  "$installer_bin" --listen "unix:$stack/installer.sock" \
    --db "sqlite:$stack/installs.db" --records "unix:$stack/records.sock" \
    --downloader "unix:$stack/downloader.sock" --models-dir "$models" \
    --hf-endpoint "$hub_url" --allow-private-urls --log-level warning \
    >"$stack/installer.log" 2>&1 &
  installer_pid=$!
  await "${mm_cli[@]}" installs list
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Samples RssAnon and RssFile of $1 every 50 ms; writes the peak of each
# (KiB, "anon file") to $2. VmHWM counts file pages the process has mapped
# (its hash reads files through mmap) as resident too; the split says how
# much is the process's own memory and how much page cache mapped in.
sampler_pid=""
sample_rss() {
  local pid=$1 out=$2 anon_peak=0 file_peak=0 anon file
  while read -r anon file < <(awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
      END { if (a != "") print a, f }' "/proc/$pid/status" 2>/dev/null) &&
    [[ -n $anon ]]; do
    ((anon > anon_peak)) && anon_peak=$anon
    ((file > file_peak)) && file_peak=$file
    echo "$anon_peak $file_peak" >"$out.tmp" && mv "$out.tmp" "$out"
    sleep 0.05
  done
}
start_sampler() {
  echo "0 0" >"$2"
  sample_rss "$1" "$2" &
  sampler_pid=$!
}
stop_sampler() {
  stop_pid "$sampler_pid"
  sampler_pid=""
}

# The phases of a finished install job (`mm --json install --wait`'s
# output in $1), from its events' times, in seconds: "download
# identify+place+register" (the download from download_started to
# downloads_complete; the rest from started to complete).
phases() {
  python3 - "$1" <<'PY'
import datetime, json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])
def when(event):
    stamp = event["time"]
    if isinstance(stamp, str):
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return int(stamp.get("seconds", 0)) + int(stamp.get("nanos", 0)) / 1e9
times = {}
for event in job.get("events", []):
    times.setdefault(event["type"], when(event))
print("%.2f %.2f" % (times["downloads_complete"] - times["download_started"],
                    times["complete"] - times["started"]))
PY
}

# --- timing -----------------------------------------------------------------

# CPU seconds (user + system) the running services have used so far; 0
# when none runs.
clock_ticks=$(getconf CLK_TCK)
services_cpu() {
  local pid ticks=0 fields
  for pid in "${records_pid:-}" "${downloader_pid:-}" "${installer_pid:-}"; do
    [[ -n $pid && -r /proc/$pid/stat ]] || continue
    # Fields 14 and 15 (utime, stime), counted after the command name,
    # which is in parentheses and may hold spaces.
    fields=$(sed 's/^.*) //' "/proc/$pid/stat")
    ticks=$((ticks + $(awk '{ print $12 + $13 }' <<<"$fields")))
  done
  awk -v t="$ticks" -v hz="$clock_ticks" 'BEGIN { printf "%.3f", t / hz }'
}

# Runs "$@" and sets `wall` and `cpu` (seconds; cpu is the command's user +
# system time, plus, when with_services=1, what the services used meanwhile,
# since our installs do their work in mm-installer, not in the CLI). On a
# machine shared with other work, wall time includes waiting for a CPU and
# CPU time does not. A failing command ends the benchmark with its output.
with_services=0
timed() {
  local start end log=$work/command.log times=$work/command.times
  local services_before=0 services_after=0 user sys
  ((with_services)) && services_before=$(services_cpu)
  start=$(date +%s%N)
  if ! /usr/bin/time -f '%U %S' -o "$times" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "command failed: $*"
  fi
  end=$(date +%s%N)
  ((with_services)) && services_after=$(services_cpu)
  wall=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
  read -r user sys <"$times"
  cpu=$(awk -v u="$user" -v s="$sys" -v b="$services_before" \
    -v a="$services_after" 'BEGIN { printf "%.3f", u + s + a - b }')
}

stats() { # prints "min median" of the numbers on stdin
  sort -g | awk '{ v[NR] = $1 } END {
    printf "%.3f %.3f\n", v[1], (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2 }'
}

# Removes the last run's outputs and flushes what they left dirty, so its
# write-back does not land in the next run's time.
fresh() {
  rm -rf "$peer_out"
  mkdir -p "$peer_out"
  sync
}

# Checks that the records hold exactly one model, of $1 (type/format/base);
# $2 names the case in the error.
check_installed() {
  local got
  got=$("${mm_cli[@]}" --json models list | python3 -c '
import json, sys
found = json.load(sys.stdin)
if isinstance(found, dict):
    found = found.get("models", [])
kinds = ["/".join(str(m.get(k)) for k in ("type", "format", "base"))
         for m in found]
print(len(kinds), *kinds)')
  [[ $got == "1 $1" ]] || die "$2: expected one $1 model, the records say: $got"
}

# Case a.
peer_a() {
  fresh
  : >"$work/aria2.list"
  local f fetch
  for f in "${repo_files[@]}"; do
    printf '%s\n  out=%s\n' "$hub_url/$repo/resolve/$commit/$f" "$f" >>"$work/aria2.list"
  done
  # Timed apart, so the report can say which half takes the time; the
  # pair's wall is the sum (nothing runs between the two).
  timed aria2c -j4 -q --file-allocation=falloc -i "$work/aria2.list" -d "$peer_out"
  fetch=$wall
  local fetch_cpu=$cpu
  timed env -C "$peer_out" b3sum -- "${repo_files[@]}"
  peer_parts_a+=("$fetch $wall")
  wall=$(awk -v a="$fetch" -v b="$wall" 'BEGIN { printf "%.3f", a + b }')
  cpu=$(awk -v a="$fetch_cpu" -v b="$cpu" 'BEGIN { printf "%.3f", a + b }')
  diff -rq "$files_root" "$peer_out" >&2 || die "aria2c's files differ"
}
ours_a() {
  start_stack
  fresh
  start_sampler "$installer_pid" "$work/rss-a"
  with_services=1 timed "${mm_cli[@]}" --json install "$repo" --wait
  stop_sampler
  cp "$work/command.log" "$work/job-a.json"
  hwm_runs+=("$(vm_hwm_kib "$installer_pid")")
  read -r anon file <"$work/rss-a"
  anon_runs+=("$anon") file_runs+=("$file")
  phases_a+=("$(phases "$work/job-a.json")")
  check_installed "main/diffusers/sdxl" "case a"
  [[ -z $(find "$models" -maxdepth 1 -name 'tmpinstall_*') ]] ||
    die "case a left a tmpinstall_ folder"
}
# Case b; b1 the same against one thread of b3sum (ours hashes with
# blake3_multi, every CPU, like b3sum). Each side hashes a fresh `cp` of
# the checkpoint: how a file came into the page cache (written by cp, or
# written long ago and read back) decides the size of its cached pages and
# so the cost of mapping them; measured here, b3sum spent 0.10 s of system
# time on a fresh copy and 0.17-0.22 s on the original.
peer_copy=""
fresh_peer_copy() {
  peer_copy=$work/peer-source.safetensors
  rm -f "$peer_copy"
  cp "$checkpoint" "$peer_copy"
  fresh
}
peer_b() {
  fresh_peer_copy
  timed b3sum -- "$peer_copy"
  rm -f "$peer_copy"
}
peer_b1() {
  fresh_peer_copy
  timed b3sum --num-threads 1 -- "$peer_copy"
  rm -f "$peer_copy"
}
# b2: against our own hash of the file (the same library call the
# installer makes, on one thread), so the difference is what the install
# adds to hashing.
peer_b2() {
  fresh_peer_copy
  timed "$mm" hash "$peer_copy"
  rm -f "$peer_copy"
}
ours_b() {
  start_stack
  # The source is consumed (moved): a copy on the models' file system.
  rm -f "$stack/checkpoint.safetensors"
  cp "$checkpoint" "$stack/checkpoint.safetensors"
  fresh
  with_services=1 timed "${mm_cli[@]}" --json install \
    "$stack/checkpoint.safetensors" --wait
  job_b+=("$wall/$(job_span "$work/command.log")")
  hwm_b_runs+=("$(vm_hwm_kib "$installer_pid")")
  check_installed "main/checkpoint/sd-1" "case b"
  [[ ! -e $stack/checkpoint.safetensors ]] || die "case b left its source"
}

# The seconds from a finished job's "started" event to its "complete"
# (`mm --json install --wait`'s output in $1).
job_span() {
  python3 - "$1" <<'PY'
import datetime, json, sys
text = open(sys.argv[1]).read()
job = json.loads(text[text.index("{"):])
times = {e["type"]: datetime.datetime.fromisoformat(
    e["time"].replace("Z", "+00:00")).timestamp() for e in job["events"]}
print("%.2f" % (times["complete"] - times["started"]))
PY
}

rows=()
cpu_rows=()
job_b=()
hwm_b_runs=()
hwm_runs=()
anon_runs=()
file_runs=()
phases_a=()
peer_parts_a=()
# One case: name, bytes, peer label, our label, target ratio, and two
# functions that each do one run and set `wall`.
run_case() {
  local name=$1 bytes=$2 peer_label=$3 our_label=$4 target=$5 peer_fn=$6
  local ours_fn=$7
  local -a peer_walls=() our_walls=() peer_cpus=() our_cpus=()
  local i who
  for ((i = 1; i <= runs; i++)); do
    # Alternate which goes first, so neither always follows the other.
    local order=(peer ours)
    ((i % 2 == 0)) && order=(ours peer)
    for who in "${order[@]}"; do
      if [[ $who == peer ]]; then
        "$peer_fn"
        peer_walls+=("$wall") peer_cpus+=("$cpu")
      else
        "$ours_fn"
        our_walls+=("$wall") our_cpus+=("$cpu")
      fi
      printf '  %s run %d %-5s wall %7.3f s  cpu %7.3f s  (load %s)\n' \
        "$name" "$i" "$who" "$wall" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)" >&2
    done
  done
  local pmin pmed omin omed pcmin pcmed ocmin ocmed
  read -r pmin pmed < <(printf '%s\n' "${peer_walls[@]}" | stats)
  read -r omin omed < <(printf '%s\n' "${our_walls[@]}" | stats)
  read -r pcmin pcmed < <(printf '%s\n' "${peer_cpus[@]}" | stats)
  read -r ocmin ocmed < <(printf '%s\n' "${our_cpus[@]}" | stats)
  rows+=("$(awk -v n="$name" -v p="$peer_label" -v o="$our_label" -v b="$bytes" \
    -v pmin="$pmin" -v pmed="$pmed" -v omin="$omin" -v omed="$omed" \
    -v t="$target" 'BEGIN {
      r = omed / pmed
      printf "| %s | `%s` | %.2f / %.2f | `%s` | %.2f / %.2f | %.2f (min %.2f) | <= %.2f: %s |",
        n, p, pmin, pmed, o, omin, omed, r, omin / pmin, t,
        (r <= t ? "met" : "**missed**")
    }')")
  cpu_rows+=("$(awk -v n="$name" -v pmin="$pcmin" -v pmed="$pcmed" \
    -v omin="$ocmin" -v omed="$ocmed" 'BEGIN {
      printf "| %s | %.2f / %.2f | %.2f / %.2f | %.2f (min %.2f) |",
        n, pmin, pmed, omin, omed, omed / pmed, omin / pmin
    }')")
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 2^20 }' /proc/meminfo)"
echo "versions: $(aria2c --version | head -n1), $(b3sum --version), $(nginx -v 2>&1 | cut -d' ' -f3)"
echo "uptime before: $(uptime)"
echo "command: $0 --work-dir $work --runs $runs --build-dir $build --weights-mib $weights_mib --checkpoint-mib $checkpoint_mib"
echo "repo: ${#repo_files[@]} files, $repo_bytes bytes; checkpoint: $checkpoint_bytes bytes"
began=$SECONDS

echo "case a: Hugging Face repo, $((repo_bytes >> 20)) MiB" >&2
run_case "a. HF repo, ${#repo_files[@]} files, $((repo_bytes >> 20)) MiB" \
  "$repo_bytes" 'aria2c -j4 -i LIST; b3sum FILES' "mm install $repo --wait" \
  1.10 peer_a ours_a
echo "case b: local file, $((checkpoint_bytes >> 20)) MiB" >&2
run_case "b. local file, $((checkpoint_bytes >> 20)) MiB" "$checkpoint_bytes" \
  'b3sum FILE' 'mm install FILE --wait' 1.05 peer_b ours_b
run_case "b1. local file, $((checkpoint_bytes >> 20)) MiB" "$checkpoint_bytes" \
  'b3sum --num-threads 1 FILE' 'mm install FILE --wait' 1.05 peer_b1 ours_b
run_case "b2. local file, $((checkpoint_bytes >> 20)) MiB" "$checkpoint_bytes" \
  'mm hash FILE' 'mm install FILE --wait' 1.05 peer_b2 ours_b

echo
echo "| case | peer | peer s min / median | ours | ours s min / median | ours/peer median (min/min) | target |"
echo "|---|---|---:|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "CPU time (user + system; ours: the CLI plus what mm-records, mm-downloader"
echo "and mm-installer used during the install), the same runs:"
echo
echo "| case | peer cpu s min / median | ours cpu s min / median | ours/peer median (min/min) |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${cpu_rows[@]}"
echo
# KiB lists on stdin -> "min / median / max" in MiB.
mib_stats() {
  sort -g | awk '{ v[NR] = $1 / 1024 } END {
    printf "%.1f / %.1f / %.1f MiB", v[1], (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2, v[NR] }'
}
hwm_max=$(printf '%s\n' "${hwm_runs[@]}" | sort -g | tail -n1)
echo "| mm-installer memory over one install of case a | min / median / max of $runs runs |"
echo "|---|---:|"
echo "| VmHWM (peak resident, file pages mapped in included) | $(printf '%s\n' "${hwm_runs[@]}" | mib_stats) |"
echo "| peak RssAnon, sampled every 50 ms (its own memory) | $(printf '%s\n' "${anon_runs[@]}" | mib_stats) |"
echo "| peak RssFile, sampled every 50 ms (mapped files) | $(printf '%s\n' "${file_runs[@]}" | mib_stats) |"
echo "| (case b, for comparison: VmHWM over one local install) | $(printf '%s\n' "${hwm_b_runs[@]}" | mib_stats) |"
printf '| target < 64 MB on VmHWM | %s |\n' \
  "$(awk -v k="$hwm_max" 'BEGIN { print (k * 1024 < 64e6 ? "met" : "**missed**") }')"
echo
echo "Where the time goes in case a, per run (s):"
for ((i = 0; i < runs; i++)); do
  read -r fetch hash <<<"${peer_parts_a[i]}"
  read -r download rest <<<"${phases_a[i]}"
  echo "  run $((i + 1)): peer aria2c $fetch + b3sum $hash; ours download $download (download_started..downloads_complete) + probe/hash/place/register $rest (started..complete)"
done
echo
echo "Case b, ours, per run (b, b1, b2 in turn): wall s / job started..complete s:"
for ((i = 0; i < ${#job_b[@]}; i++)); do
  printf '  %s' "${job_b[i]}"
done
echo
echo
echo "uptime after: $(uptime); took $((SECONDS - began)) s"
