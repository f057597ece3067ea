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
  python3-grpcio python3-numpy python3-yaml
  libtorch-dev python3-torch
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js and npm for the Kubernetes schema validator (deploy/k8s/validate):
# Debian's, unless a node with its npm is already installed (a NodeSource
# nodejs bundles npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

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

# The schema validator's pinned packages (package-lock.json), installed
# once per lockfile: tests/deploy/k8s_test.py runs it offline. Absent when
# only this script was copied (deploy/docker/Dockerfile's build stage).
validate_dir="$(cd "$(dirname "$0")/.." && pwd)/deploy/k8s/validate"
if [[ -f "$validate_dir/package-lock.json" ]]; then
  if ! cmp -s "$validate_dir/package-lock.json" \
      "$validate_dir/node_modules/.mm-installed-lock.json"; then
    echo "setup: npm ci in deploy/k8s/validate"
    (cd "$validate_dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$validate_dir/package-lock.json" \
      "$validate_dir/node_modules/.mm-installed-lock.json"
  fi
fi

# `kubectl kustomize` renders the manifests in tests/deploy/k8s_test.py.
# Debian's kubernetes-client is too old for kustomize components; these
# machines come with a current kubectl.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: warning: no kubectl; the deploy_k8s tests will fail" >&2
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
