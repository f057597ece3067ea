#!/usr/bin/env bash
# Where a get's CPU goes: runs records_bench, and while its gRPC throughput
# phase runs, samples the whole machine with `perf record -a`. The samples
# are then split by process (the bench: gRPC client and server in one
# process; the PostgreSQL backends serving it; everything else on the
# machine) and, within each, by shared object and by function. These are
# the tables behind the profile in docs/PERFORMANCE.md.
#
#   bench/records/profile.sh                     # postgres, 10,000 records
#   bench/records/profile.sh --backend sqlite --size 100000 --seconds 10
#   bench/records/profile.sh --call-graph        # also PostgreSQL's phases
#
# --call-graph records with DWARF unwinding (slower to record and minutes to
# report) and prints how PostgreSQL's time divides between parsing,
# planning, executing and talking to the client. Needs perf and
# system-wide sampling (root, or kernel.perf_event_paranoid <= 0). Set
# RECORDS_BENCH to use another records_bench binary, OUT to keep perf.data
# and the bench's output somewhere else than a new temporary directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${RECORDS_BENCH:-$root/build/default/bench/records/records_bench}
backend=postgres
size=10000
seconds=8
call_graph=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --call-graph) call_graph=1; shift ;;
    *) echo "unknown argument '$1'; see the comment at the top of $0" >&2; exit 2 ;;
  esac
done
if [[ ! -x $bench ]]; then
  echo "no records_bench at $bench: build it (cmake --build --preset default --target records_bench) or set RECORDS_BENCH" >&2
  exit 1
fi
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
out=${OUT:-$(mktemp -d /tmp/records-profile-XXXXXX)}
mkdir -p "$out"

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# A previous run's output in OUT must not look like this run's progress.
rm -f "$out/bench.txt" "$out/bench.err" "$out/perf.data"
: >"$out/bench.err"
# The gRPC phase must outlast the recording; latency phases are cut short.
"$bench" --backends "$backend" --sizes "$size" --get-calls 200 \
  --search-calls 10 --duration $((seconds + 4)) >"$out/bench.txt" 2>"$out/bench.err" &
bench_pid=$!
until grep -q "\] throughput gRPC" "$out/bench.err"; do
  if ! kill -0 "$bench_pid" 2>/dev/null; then
    echo "records_bench ended before its gRPC phase:" >&2
    tail -5 "$out/bench.err" >&2
    exit 1
  fi
  sleep 0.2
done
sleep 2  # past the phase's start-up
# The backends serving the bench's database; their process title names it.
pg_pids=$(pgrep -d, -f "records_bench_${size}" || true)
record=(-a -F 999)
if [[ $call_graph == 1 ]]; then record=(-a -F 299 --call-graph dwarf,16384); fi
perf record "${record[@]}" -o "$out/perf.data" -- sleep "$seconds" 2>"$out/perf.err"
wait "$bench_pid"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
grep -E "^\|(---| backend | $backend )" "$out/bench.txt" | grep -v "search"
echo
echo "samples over ${seconds} s, by process (pids: bench $bench_pid; PostgreSQL ${pg_pids:-none}):"

perf script -i "$out/perf.data" -F pid,ip,sym,dso --hide-call-graph 2>/dev/null | awk \
  -v bench="$bench_pid" -v pg=",${pg_pids}," '
  {
    pid = $1
    if (pid == bench) group = "bench"
    else if (index(pg, "," pid ",")) group = "postgres"
    else group = "other"
    dso = $NF; gsub(/[()]/, "", dso); n = split(dso, parts, "/"); dso = parts[n]
    sym = ""
    for (i = 3; i < NF; ++i) sym = sym (sym == "" ? "" : " ") $i
    if (sym == "[unknown]") sym = sym " in " dso
    count[group]++; by_dso[group "\t" dso]++; by_sym[group "\t" sym]++; total++
  }
  END {
    for (g in count) printf "  %-8s %6.1f%% of all samples\n", g, 100 * count[g] / total
    for (k in by_dso) {
      split(k, a, "\t")
      if (a[1] != "other") printf "D\t%s\t%.1f\t%s\n", a[1], 100 * by_dso[k] / count[a[1]], a[2]
    }
    for (k in by_sym) {
      split(k, a, "\t")
      if (a[1] != "other") printf "S\t%s\t%.1f\t%s\n", a[1], 100 * by_sym[k] / count[a[1]], a[2]
    }
  }' >"$out/split.txt"
grep -v -P "^[DS]\t" "$out/split.txt" | sort
for group in bench postgres; do
  grep -q -P "^D\t$group\t" "$out/split.txt" || continue
  echo
  echo "$group, by shared object (% of its samples, >= 0.5%):"
  grep -P "^D\t$group\t" "$out/split.txt" | sort -t$'\t' -k3,3nr |
    awk -F'\t' '$3 >= 0.5 { printf "  %5.1f%%  %s\n", $3, $4 }'
  echo "$group, top functions (% of its samples):"
  grep -P "^S\t$group\t" "$out/split.txt" | sort -t$'\t' -k3,3nr | head -15 |
    awk -F'\t' '{ printf "  %5.1f%%  %s\n", $3, substr($4, 1, 100) }'
done

if [[ $call_graph == 1 && -n $pg_pids ]]; then
  echo
  echo "PostgreSQL, inclusive time of its phases (% of its samples):"
  perf report -i "$out/perf.data" --pid "$pg_pids" --children --percentage relative \
    --sort sym --stdio -g none 2>/dev/null |
    grep -E "\] (pg_parse_query|pg_analyze_and_rewrite_(var|fixed)params|GetCachedPlan|pg_plan_queries|PortalStart|PortalRun|OutputFunctionCall|CommitTransactionCommand|secure_read|secure_write|WaitEventSetWait)$" |
    awk '!seen[$NF]++ { printf "  %6s  %s\n", $1, $NF }'
fi
echo
echo "perf.data and the bench's output are in $out"
