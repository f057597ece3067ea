#!/usr/bin/env bash
# Installs the Debian 12 packages that the build and the tests need, when any
# is missing. Idempotent: runs `apt-get update` at most once, and only when
# something must be installed. Must run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang clang-format clang-tidy
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev
  libsqlite3-dev libpq-dev postgresql postgresql-contrib
  libcurl4-openssl-dev libboost-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  libclang-rt-14-dev ccache linux-perf b3sum coreutils openssl python3 procps util-linux
  python3-grpcio python3-numpy
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Node.js client example's packages, at the versions its lockfile pins
# (examples/node/package-lock.json), for tests/e2e/cluster_test; again only
# when the lockfile changed. Node (20) is not from Debian's archive and is
# used where installed; the npm registry is needed here, never by a test.
# --ignore-scripts: no package's install script runs (none is needed).
node_dir="$(cd "$(dirname "$0")/../examples/node" && pwd)"
if command -v npm >/dev/null; then
  if [[ ! -e $node_dir/node_modules/.package-lock.json ||
        $node_dir/package-lock.json -nt $node_dir/node_modules/.package-lock.json ]]; then
    echo "setup: npm ci in examples/node"
    (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts)
  fi
else
  echo "setup: no npm; the Node.js client example will not run"
fi
