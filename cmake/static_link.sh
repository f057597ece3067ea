#!/usr/bin/env bash
# Link launcher for `mm` (cli/CMakeLists.txt, MM_STATIC_CLI): runs the link
# command it is given with gRPC, protobuf, abseil and their small helpers
# (re2, c-ares, upb, address_sorting, zlib) taken from their static
# archives instead of their shared libraries, where the archive is
# installed beside the shared library.
#
# Why: `mm` is a short-lived command; with ~60 shared libraries the dynamic
# loader's symbol lookups were most of its start-up (an `mm --help` took
# 16-21 ms, 6-7 ms linked this way; a program that does nothing, 2 ms).
# The services keep the shared libraries: they start once.
#
# Every archive on the line (ours and the substituted ones) goes into one
# --start-group ... --end-group at the place of the first, so their order
# does not matter; everything else keeps its place. libc, libstdc++,
# OpenSSL, SQLite and the rest stay shared.
set -euo pipefail

static_name() {
  # lib<name>.so[.version] or -l<name>, for the libraries linked statically.
  case $1 in
    absl_* | grpc | grpc++ | grpc++_reflection | gpr | upb | address_sorting | \
      re2 | cares | protobuf | z) return 0 ;;
  esac
  return 1
}

args=()
archives=()
group_at=-1
search_dirs=()
for arg in "$@"; do
  archive=""
  case $arg in
    -L*) search_dirs+=("${arg#-L}") ;;
  esac
  case $arg in
    *.a) archive=$arg ;;
    /*/lib*.so | /*/lib*.so.*)
      file=${arg##*/}
      name=${file#lib}
      name=${name%%.so*}
      if static_name "$name" && [[ -f ${arg%/*}/lib$name.a ]]; then
        archive=${arg%/*}/lib$name.a
      fi
      ;;
    -l*)
      name=${arg#-l}
      if static_name "$name"; then
        for dir in "${search_dirs[@]}"; do
          if [[ -f $dir/lib$name.a ]]; then
            archive=$dir/lib$name.a
            break
          fi
        done
      fi
      ;;
  esac
  if [[ -n $archive ]]; then
    ((group_at >= 0)) || { group_at=${#args[@]}; args+=(__GROUP__); }
    archives+=("$archive")
  else
    args+=("$arg")
  fi
done

command=()
for arg in "${args[@]}"; do
  if [[ $arg == __GROUP__ ]]; then
    command+=(-Wl,--start-group "${archives[@]}" -Wl,--end-group)
  else
    command+=("$arg")
  fi
done
exec "${command[@]}"
