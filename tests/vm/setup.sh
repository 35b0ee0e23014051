#!/bin/sh
# Prepares the emulated machines of the vm tests: installs QEMU, busybox,
# cpio and the aarch64 cross compiler from Debian 12, and caches Debian's
# amd64 and arm64 kernel images (unpacked, not installed) and arm64's
# static busybox under
# $HWWATCH_VM_CACHE (default /var/cache/hwwatch-vm). Safe to run again: a
# cached kernel is kept, packages already present are not reinstalled.
# Prints nothing on success but the two kernel paths and the arm64 busybox.
set -eu
cache=${HWWATCH_VM_CACHE:-/var/cache/hwwatch-vm}
export DEBIAN_FRONTEND=noninteractive

need=""
for cmd in qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm \
           aarch64-linux-gnu-g++:g++-aarch64-linux-gnu cpio:cpio busybox:busybox-static; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need="$need ${cmd#*:}"
done
# A static x86_64 guest needs libc.a and libstdc++.a (libc6-dev, libstdc++-12-dev).
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need="$need libc6-dev"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  updated=no
fi
if [ -n "$need" ] || [ "${updated:-yes}" = no ] || ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ -n "$need" ]; then
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# unpack PKG:ARCH FILE DEST: DEST becomes FILE (a path or a glob) of the
# Debian package PKG for ARCH, downloaded and unpacked (not installed);
# written whole or not at all.
unpack() {
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$1" >/dev/null 2>&1) ||
    { rm -rf "$tmp"; echo "setup.sh: apt-get download $1 failed" >&2; exit 1; }
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$(dirname "$3")"
  # shellcheck disable=SC2086
  cp "$tmp"/x/$2 "$3.part"
  mv "$3.part" "$3"
  rm -rf "$tmp"
}
# kernel ARCH: prints the cached vmlinuz of Debian's current kernel for ARCH.
kernel() {
  arch=$1
  pkg=$(apt-cache depends "linux-image-$arch:$arch" 2>/dev/null |
        sed -n "s/^ *Depends: \(linux-image-[0-9][^:]*-$arch\)\(:$arch\)\?$/\1/p" | head -n1)
  [ -n "$pkg" ] || { echo "setup.sh: cannot find Debian's linux-image package for $arch" >&2; exit 1; }
  [ -s "$cache/$pkg/vmlinuz" ] || unpack "$pkg:$arch" 'boot/vmlinuz-*' "$cache/$pkg/vmlinuz"
  echo "$cache/$pkg/vmlinuz"
}
# busybox_for ARCH DEBARCH: prints the cached static busybox for a guest of
# ARCH, Debian's DEBARCH one unpacked.
busybox_for() {
  bin="$cache/bin/busybox-$1"
  [ -x "$bin" ] || unpack "busybox-static:$2" bin/busybox "$bin"
  echo "$bin"
}
kernel amd64
kernel arm64
busybox_for aarch64 arm64
