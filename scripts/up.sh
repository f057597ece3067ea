#!/usr/bin/env bash
# Sets up, builds, and starts the whole system on its embedded default (unix
# sockets and SQLite under the state directory, $MM_HOME or
# ~/.local/state/modelmanager), in the foreground; Ctrl-C stops it.
# Extra arguments go to `mm up` (e.g. --home DIR, --detach).
#
# It builds the target `mm-system`: `mm` and every service executable this
# build makes; `mm up` starts each of them and says in one line why any
# other service is not started. MM_BUILD_DIR names an already configured
# build folder to build and run from instead of the default preset's (the
# end-to-end test tests/e2e/up_e2e_test.cc uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ -n "${MM_BUILD_DIR:-}" ]]; then
  build_dir=$MM_BUILD_DIR
else
  build_dir=build/default
  cmake --preset default >/dev/null
fi
cmake --build "$build_dir" -j "$(nproc)" --target mm-system
exec "$build_dir/cli/mm" up "$@"
