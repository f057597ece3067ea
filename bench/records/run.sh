#!/usr/bin/env bash
# The records benchmark: gRPC on a unix socket beside in-process calls, on
# SQLite and PostgreSQL, with 10,000 and 100,000 records. Builds
# records_bench with the default preset when it is missing, prints the
# machine it ran on, then the bench's tables (markdown, ready for
# docs/PERFORMANCE.md).
#
#   bench/records/run.sh                                  # everything
#   bench/records/run.sh --sizes 10000 --backends sqlite  # a subset
#
# Any argument is passed to records_bench (--help lists them). Set
# RECORDS_BENCH to use an already built binary. As root, the throwaway
# PostgreSQL runs as the `postgres` user (tests/testing/postgres_cluster.h).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${RECORDS_BENCH:-$root/build/default/bench/records/records_bench}

if [[ ! -x $bench ]]; then
  echo "building records_bench (cmake --preset default)..." >&2
  (cd "$root" && cmake --preset default >/dev/null &&
    cmake --build --preset default --target records_bench -j"$(nproc)")
fi

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $0 $*"
start=$(date +%s)
"$bench" "$@"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); took $(($(date +%s) - start)) s"
