#!/usr/bin/env bash
# The download benchmark: mm-downloader (driven by `mm download --wait`, as a
# user would) beside curl and aria2c, all fetching the same files from one
# nginx on 127.0.0.1, and the downloader's memory with many jobs queued.
#
#   bench/download/run.sh [--work-dir DIR] [--runs N] [--build-dir DIR]
#                         [--memory-seconds S] [--skip-memory]
#
# Cases, each run peer and ours alternately, --runs times (default 3), the
# median reported, every output compared with its source:
#   a. one 2 GiB file on one connection: `curl -s -o` vs --segments 1
#      --sync-files=false (neither syncs); a2. the same with our default
#      fdatasync before the rename;
#   b. one 2 GiB file on 8 connections: `aria2c -x8 -s8 -k1M` vs
#      --segments 8;
#   c. 500 files of 1 MiB, 16 at once: `aria2c -j16 -i LIST` vs one
#      `mm download --files LIST` job with --max-parallel-files 16.
# Then 5 transfers of 10 GiB sparse files held at 50 MB/s in total with 100
# jobs queued behind them, to sample the downloader's resident memory
# (5 x 2 GiB when the output file system lacks room for 5 x 10 GiB of
# pre-allocated destinations).
#
# Wall time is the peer's, or the `mm download` command's (create to done);
# CPU is user + system of the peer's process, or of `mm` plus what
# mm-downloader used meanwhile (/proc/PID/stat). The page cache is not
# dropped: the sources are served from memory, so this measures the client
# side, not the disk. Installs nginx, aria2, curl and time with apt-get
# when missing. Not part of scripts/test.sh.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=/tmp/mm-dl-bench
runs=3
build=$root/build/bench
memory_seconds=30
skip_memory=false

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

while (($#)); do
  case $1 in
    --work-dir) work=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --memory-seconds) memory_seconds=$2; shift 2 ;;
    --skip-memory) skip_memory=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

mm=$build/cli/mm
downloader=$build/services/downloader/mm-downloader
for binary in "$mm" "$downloader"; do
  if [[ ! -x $binary ]]; then
    echo "missing $binary; build it first:" >&2
    echo "  cmake --build $build -j2 --target mm mm-downloader" >&2
    exit 1
  fi
done

# --- tools ------------------------------------------------------------------

PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v aria2c >/dev/null || missing+=(aria2)
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3)
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
peer_out=$work/peer-out
dl_dir=$work/downloader
clk_tck=$(getconf CLK_TCK)
nginx_pid=""
downloader_pid=""
sampler_pid=""

stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$sampler_pid"
  stop_pid "$downloader_pid"
  stop_pid "$nginx_pid"
  # Outputs only; the data is kept for the next run.
  rm -rf "$peer_out" "$dl_dir" "$work/nginx"
}
trap cleanup EXIT

die() {
  echo "error: $*" >&2
  exit 1
}

# --- data -------------------------------------------------------------------

big_bytes=$((2 << 30))
small_bytes=$((1 << 20))
small_count=500

file_size() { stat -c %s "$1" 2>/dev/null || echo -1; }

mkdir -p "$data/small" "$data/sparse"
if [[ $(file_size "$data/big.bin") != "$big_bytes" ]]; then
  echo "writing $data/big.bin (2 GiB of random data)..." >&2
  head -c "$big_bytes" /dev/urandom >"$data/big.bin.tmp"
  mv "$data/big.bin.tmp" "$data/big.bin"
fi
for i in $(seq -f '%03g' 1 "$small_count"); do
  if [[ $(file_size "$data/small/f$i.bin") != "$small_bytes" ]]; then
    head -c "$small_bytes" /dev/urandom >"$data/small/f$i.bin"
  fi
done
# Both clients get the sources from memory.
cat "$data/big.bin" "$data/small/"*.bin >/dev/null

# --- nginx ------------------------------------------------------------------

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url=http://127.0.0.1:$port
mkdir -p "$work/nginx/tmp"
# As root nginx would hand its workers to `nobody`; keep them ours.
user_line=""
((EUID == 0)) && user_line="user $(id -un) $(id -gn);"
cat >"$work/nginx/nginx.conf" <<EOF
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
    root $data;
  }
}
EOF
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
await curl -sf -o /dev/null "$base_url/small/f001.bin"

# --- the downloader ---------------------------------------------------------

dl_addr=unix:$dl_dir/dl.sock
# `mm` pointed at the bench's downloader; an array, so /usr/bin/time can
# run it.
mm_cli=(env "MM_HOME=$dl_dir/home" "$mm" --downloader "$dl_addr")

# A fresh mm-downloader (empty queue) with the given extra flags.
start_downloader() {
  stop_pid "$downloader_pid"
  rm -rf "$dl_dir"
  mkdir -p "$dl_dir/out" "$dl_dir/home"
  "$downloader" --listen "$dl_addr" --db "sqlite:$dl_dir/dl.db" \
    --download-root "$dl_dir/out" --allow-private-urls --shutdown-grace 1s \
    --log-level warning "$@" >"$dl_dir/log" 2>&1 &
  downloader_pid=$!
  await "${mm_cli[@]}" downloads list
}

# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  # Fields after "(comm)": state is the first, utime the 12th, stime 13th.
  # shellcheck disable=SC2086  # split into fields on purpose
  set -- ${stat##*) }
  echo $((${12} + ${13}))
}

# Samples VmRSS of $1 every 0.1 s; writes the peak (KiB) to $2.
sample_rss() {
  local pid=$1 file=$2 peak=0 kb
  while kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) &&
    [[ -n $kb ]]; do
    ((kb > peak)) && peak=$kb && echo "$peak" >"$file"
    sleep 0.1
  done
}
start_sampler() {
  echo 0 >"$1"
  sample_rss "$downloader_pid" "$1" &
  sampler_pid=$!
}
stop_sampler() {
  stop_pid "$sampler_pid"
  sampler_pid=""
}
vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$downloader_pid/status"; }

# --- timing -----------------------------------------------------------------

# Runs "$@" and sets `wall` and `cpu` (seconds); a failing command ends the
# benchmark with its output.
timed() {
  local start end log=$work/command.log times=$work/time.txt
  start=$(date +%s%N)
  if ! /usr/bin/time -f '%U %S' -o "$times" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    die "command failed: $*"
  fi
  end=$(date +%s%N)
  wall=$(awk -v ns=$((end - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
  cpu=$(tail -n1 "$times" | awk '{ printf "%.2f", $1 + $2 }')
}

# Like timed, for `mm ...`: adds the downloader's CPU over the same span.
timed_ours() {
  local before after cli_cpu
  before=$(cpu_ticks "$downloader_pid")
  timed "$@"
  after=$(cpu_ticks "$downloader_pid")
  cli_cpu=$cpu
  cpu=$(awk -v c="$cli_cpu" -v t=$((after - before)) -v hz="$clk_tck" \
    'BEGIN { printf "%.2f", c + t / hz }')
}

median() {
  sort -g | awk '{ v[NR] = $1 } END { print (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2 }'
}

# Removes every earlier output, ours and the peer's, so each run starts
# with the same free memory, and flushes what the last run left dirty, so
# its write-back does not land in the next run's time. Then creates $1.
fresh_dir() {
  rm -rf "$peer_out" "$dl_dir/out/big" "$dl_dir/out/small"
  mkdir -p "$1"
  sync
}

rows=()
# One case: name, bytes, peer label, and two functions that each do one
# run (sets wall/cpu) and check its output.
run_case() {
  local name=$1 bytes=$2 peer_label=$3 peer_fn=$4 ours_fn=$5
  local -a peer_walls=() peer_cpus=() our_walls=() our_cpus=()
  local i
  for ((i = 1; i <= runs; i++)); do
    # Alternate which goes first, so neither always follows the other's
    # write-back.
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
      printf '  %s run %d %-5s wall %7.3f s  cpu %6.2f s\n' "$name" "$i" \
        "$who" "$wall" "$cpu" >&2
    done
  done
  local pw pc ow oc
  pw=$(printf '%s\n' "${peer_walls[@]}" | median)
  pc=$(printf '%s\n' "${peer_cpus[@]}" | median)
  ow=$(printf '%s\n' "${our_walls[@]}" | median)
  oc=$(printf '%s\n' "${our_cpus[@]}" | median)
  rows+=("$(awk -v n="$name" -v p="$peer_label" -v b="$bytes" -v pw="$pw" \
    -v pc="$pc" -v ow="$ow" -v oc="$oc" 'BEGIN {
      gib = b / 2^30; pr = b / pw / 1e6; or = b / ow / 1e6; r = or / pr
      printf "| %s | `%s` | %.0f | %.2f | %.0f | %.2f | %.2f | %s |", n, p, pr,
        pc / gib, or, oc / gib, r, (r >= 1.0 ? "yes" : "**no**")
    }')")
}

check_same() {
  cmp -s "$1" "$2" || die "$2 differs from $1"
}

# Case a.
peer_a() {
  fresh_dir "$peer_out"
  timed curl -sf -o "$peer_out/big.bin" "$base_url/big.bin"
  check_same "$data/big.bin" "$peer_out/big.bin"
}
ours_big() {
  fresh_dir "$dl_dir/out/big"
  timed_ours "${mm_cli[@]}" download "$base_url/big.bin" --dest "$dl_dir/out/big" --wait
  check_same "$data/big.bin" "$dl_dir/out/big/big.bin"
}
# Case b.
peer_b() {
  fresh_dir "$peer_out"
  timed aria2c -x8 -s8 -k1M --file-allocation=falloc -q -d "$peer_out" \
    -o big.bin "$base_url/big.bin"
  check_same "$data/big.bin" "$peer_out/big.bin"
}
# Case c.
peer_c() {
  fresh_dir "$peer_out"
  timed aria2c -j16 -i "$work/aria2.list" -q -d "$peer_out"
  diff -rq "$data/small" "$peer_out" >&2 || die "aria2c's small files differ"
}
ours_c() {
  fresh_dir "$dl_dir/out/small"
  timed_ours "${mm_cli[@]}" download --files "$work/mm.list" --dest "$dl_dir/out/small" \
    --wait
  diff -rq "$data/small" "$dl_dir/out/small" >&2 ||
    die "mm-downloader's small files differ"
}

: >"$work/aria2.list"
: >"$work/mm.list"
for i in $(seq -f '%03g' 1 "$small_count"); do
  printf '%s\n  out=f%s.bin\n' "$base_url/small/f$i.bin" "$i" >>"$work/aria2.list"
  printf '%s\tf%s.bin\n' "$base_url/small/f$i.bin" "$i" >>"$work/mm.list"
done

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "versions: $(curl --version | head -n1 | cut -d' ' -f1-2), $(aria2c --version | head -n1), $(nginx -v 2>&1 | cut -d' ' -f3)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $0 --work-dir $work --runs $runs --build-dir $build"
echo "page cache: not dropped (sources in memory; outputs removed and synced before each run)"
began=$SECONDS

# curl does not fsync its output; ours does by default (--sync-files), so
# case a compares like with like (--sync-files=false) and a2 shows what the
# default's durability costs. aria2c fsyncs, as ours does by default.
echo "case a: one 2 GiB file, one connection" >&2
start_downloader --segments 1 --sync-files=false
run_case "a. 2 GiB, 1 connection, no fsync" "$big_bytes" 'curl' peer_a ours_big

echo "case a2: one 2 GiB file, one connection, ours with fsync" >&2
start_downloader --segments 1
run_case "a2. 2 GiB, 1 connection, ours fsyncs" "$big_bytes" 'curl' peer_a \
  ours_big

echo "case b: one 2 GiB file, 8 connections" >&2
start_downloader --segments 8
start_sampler "$work/rss-b"
run_case "b. 2 GiB, 8 connections" "$big_bytes" 'aria2c -x8 -s8 -k1M' \
  peer_b ours_big
stop_sampler
rss_b=$(<"$work/rss-b") hwm_b=$(vm_hwm_kib)

echo "case c: 500 x 1 MiB, 16 at once" >&2
start_downloader --max-parallel-files 16
start_sampler "$work/rss-c"
run_case "c. 500 x 1 MiB, 16 at once" $((small_count * small_bytes)) \
  'aria2c -j16' peer_c ours_c
stop_sampler
rss_c=$(<"$work/rss-c") hwm_c=$(vm_hwm_kib)

echo
echo "| case | peer | peer MB/s | peer CPU s/GiB | ours MB/s | ours CPU s/GiB | ours/peer | target >= 1.0 |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "MB = 10^6 bytes; medians of $runs runs each."
echo
echo "| mm-downloader memory | sampled peak VmRSS | VmHWM |"
echo "|---|---:|---:|"
printf '| case b (8 connections) | %.1f MiB | %.1f MiB |\n' \
  "$(awk -v k="$rss_b" 'BEGIN { print k / 1024 }')" \
  "$(awk -v k="$hwm_b" 'BEGIN { print k / 1024 }')"
printf '| case c (16 files at once) | %.1f MiB | %.1f MiB |\n' \
  "$(awk -v k="$rss_c" 'BEGIN { print k / 1024 }')" \
  "$(awk -v k="$hwm_c" 'BEGIN { print k / 1024 }')"
echo

# --- memory with 5 running and 100 queued jobs ------------------------------

if ! $skip_memory; then
  # Each running transfer pre-allocates its whole destination.
  free_bytes=$(($(df -B1 --output=avail "$dl_dir/out" | tail -n1)))
  sparse_size=10G sparse_label="10 GiB"
  sparse_bytes=$((10 << 30))
  margin=$((4 << 30))
  if ((free_bytes < 5 * sparse_bytes + margin)); then
    sparse_size=2G sparse_label="2 GiB"
    sparse_bytes=$((2 << 30))
    echo "only $((free_bytes >> 30)) GiB free under $dl_dir/out: using 5 x 2 GiB, not 5 x 10 GiB" >&2
  fi
  echo "memory: 5 x $sparse_label running at 50 MB/s in total, 100 queued" >&2
  for i in 1 2 3 4 5; do
    rm -f "$data/sparse/s$i.bin"
    truncate -s "$sparse_size" "$data/sparse/s$i.bin"
  done
  start_downloader --max-parallel 5 --max-bytes-per-second 50000000
  mkdir -p "$dl_dir/out/sparse" "$dl_dir/out/queued"
  for i in 1 2 3 4 5; do
    "${mm_cli[@]}" download "$base_url/sparse/s$i.bin" --dest "$dl_dir/out/sparse" \
      >/dev/null
  done
  for i in $(seq -f '%03g' 1 100); do
    "${mm_cli[@]}" download "$base_url/small/f$i.bin" --dest "$dl_dir/out/queued" \
      >/dev/null
  done
  peak=0 last=0
  deadline=$((SECONDS + memory_seconds))
  while ((SECONDS < deadline)); do
    last=$(awk '/^VmRSS:/ { print $2 }' "/proc/$downloader_pid/status")
    ((last > peak)) && peak=$last
    sleep 0.5
  done
  hwm=$(vm_hwm_kib)
  # "running queued succeeded MB": job counts by state, and the MB the
  # jobs have transferred.
  read -r running queued succeeded moved < <("${mm_cli[@]}" --json downloads list |
    python3 -c '
import json, sys
jobs = json.load(sys.stdin)
count = lambda s: sum(j["state"] == "DOWNLOAD_STATE_" + s for j in jobs)
print(count("RUNNING"), count("QUEUED"), count("SUCCEEDED"),
      round(sum(int(j["bytes"]) for j in jobs) / 1e6))')
  "${mm_cli[@]}" downloads cancel --all >/dev/null
  if ((running != 5 || queued != 100)); then
    die "expected 5 jobs running and 100 queued, found $running and $queued (see $dl_dir/log)"
  fi
  echo
  echo "| 5 x $sparse_label running (50 MB/s in all), 100 queued, ${memory_seconds} s | value |"
  echo "|---|---:|"
  echo "| jobs running / queued / succeeded at the end | $running / $queued / $succeeded |"
  echo "| MB transferred (all jobs) | $moved |"
  printf '| sampled peak VmRSS | %.1f MiB |\n' "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')"
  printf '| VmRSS at the end | %.1f MiB |\n' "$(awk -v k="$last" 'BEGIN { print k / 1024 }')"
  printf '| VmHWM (process lifetime) | %.1f MiB |\n' "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')"
  printf '| target < 100 MB resident | %s |\n' \
    "$(awk -v k="$hwm" 'BEGIN { print (k * 1024 < 100e6 ? "met" : "**missed**") }')"
fi

echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - began)) s"
