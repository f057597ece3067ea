#!/usr/bin/env bash
# Sets up, builds, and starts the whole system on its embedded default (unix
# sockets and SQLite under the state directory, $MM_HOME or
# ~/.local/state/modelmanager), in the foreground; Ctrl-C stops it.
# Extra arguments go to `mm up` (e.g. --home DIR, --detach).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target mm mm-records
exec build/default/cli/mm up "$@"
