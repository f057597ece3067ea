#!/bin/sh
# Assembles the root filesystem of one runtime image: the given executables
# under /usr/local/bin, every shared library `ldd` says they load (and the
# dynamic loader) at the path the build machine has it, the CA bundle for
# outgoing HTTPS, and /etc/passwd and /etc/group naming the fixed user the
# image runs as. Nothing else: no shell, no package manager.
#
#   collect-rootfs.sh ROOT EXECUTABLE...
#
# Used by deploy/docker/Dockerfile, and by tests/deploy/docker_test.py, which
# runs each entrypoint inside such a root with chroot to prove the list of
# libraries is complete.
set -eu

if [ "$#" -lt 2 ]; then
  echo "usage: $0 ROOT EXECUTABLE..." >&2
  exit 2
fi
root=$1
shift
# The uid and gid every image runs as (deploy/k8s sets the same numbers).
uid=${MM_UID:-65532}

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/models"
chmod 1777 "$root/tmp"
for executable in "$@"; do
  cp -L "$executable" "$root/usr/local/bin/"
  # Lines look like "libx.so.1 => /lib/x/libx.so.1 (0x...)" or
  # "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso lines have no path.
  libraries=$(ldd "$executable" | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }')
  if ldd "$executable" | grep -q 'not found'; then
    echo "$0: $executable: a library is missing:" >&2
    ldd "$executable" | grep 'not found' >&2
    exit 1
  fi
  for library in $libraries; do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
done
# glibc loads these for getpwuid/getgrnam (libpq's default user, the
# loader's --shm-group) and host names (libcurl, libpq, gRPC's resolver).
for module in libnss_files.so.2 libnss_dns.so.2; do
  for dir in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu; do
    if [ -e "$dir/$module" ]; then
      mkdir -p "$root$dir"
      cp -L "$dir/$module" "$root$dir/$module"
      break
    fi
  done
done
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/nonexistent\nmm:x:%s:%s:modelmanager:/tmp:/nonexistent\n' \
  "$uid" "$uid" >"$root/etc/passwd"
printf 'root:x:0:\nmm:x:%s:\n' "$uid" >"$root/etc/group"
if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
