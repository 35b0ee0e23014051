#!/bin/sh
# boot.sh ARCH OUTDIR [BINDIR DEBUGGER [PROGRAM...]]: builds
# tests/vm/guest/vm_guest.cpp and the project's arch/ sources statically for
# ARCH (x86_64 or aarch64), packs it as /init of an initramfs, boots
# Debian's kernel for ARCH under QEMU software emulation (TCG: the debug
# exceptions are emulated, whatever the host's hypervisor does), and writes
# the serial console to OUTDIR/console.log. With BINDIR (programs built for
# ARCH: the arm64 ones come from tests/vm/cross-build.sh), the initramfs
# also holds hwwatchd and hwwatch from BINDIR, the DEBUGGER client, each
# further PROGRAM (in /), busybox and the shared libraries of all of them
# (from the host's multiarch directories, found by their ELF NEEDED
# entries), with tests/vm/guest/init-daemon.sh as /init, which runs the
# matrix and then the daemon in the guest.
# Fails unless the guest printed "GUEST DONE"; the vm_<arch>_<case> ctest
# cases judge the lines it printed. QEMU is bounded by a timeout and killed
# with its process group when this script is interrupted.
set -eu
arch=$1
out=$2
bindir=${3:-}
debugger=${4:-}
[ $# -gt 4 ] && shift 4 || set --
programs="$*"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
timeout_s=${HWWATCH_VM_TIMEOUT:-840}

kernels=$(sh "$here/setup.sh")
case "$arch" in
  x86_64)
    cxx=g++
    cc=gcc
    triple=x86_64-linux-gnu
    kernel=$(echo "$kernels" | grep -- '-amd64/')
    qemu="qemu-system-x86_64 -M q35 -cpu max"
    console=ttyS0 ;;
  aarch64)
    cxx=aarch64-linux-gnu-g++
    cc=aarch64-linux-gnu-gcc
    triple=aarch64-linux-gnu
    kernel=$(echo "$kernels" | grep -- '-arm64/')
    qemu="qemu-system-aarch64 -M virt -cpu max"
    console=ttyAMA0 ;;
  *) echo "boot.sh: unknown arch '$arch' (x86_64 or aarch64)" >&2; exit 2 ;;
esac

rm -rf "$out"
mkdir -p "$out/initramfs/dev" "$out/initramfs/proc" "$out/initramfs/sys"
echo "boot.sh: building the $arch guest with $cxx"
# shellcheck disable=SC2086
$cxx -std=c++20 -O2 -Wall -Wextra -Werror -static -I"$root" \
  "$here/guest/vm_guest.cpp" "$root"/arch/*.cpp -o "$out/initramfs/init"
mknod -m 600 "$out/initramfs/dev/console" c 5 1
memory=512
# needed FILE...: the shared libraries FILEs load, transitively, and their
# dynamic loader, as paths in the host's $triple directories (ldd cannot
# ask a foreign loader).
needed() {
  todo="$*"
  seen=""
  while [ -n "$todo" ]; do
    next=""
    for f in $todo; do
      readelf -lW "$f" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p'
      for lib in $(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case " $seen " in *" $lib "*) continue ;; esac
        seen="$seen $lib"
        path=""
        for d in /lib/$triple /usr/lib/$triple; do
          [ -e "$d/$lib" ] && { path=$d/$lib; break; }
        done
        [ -n "$path" ] || { echo "boot.sh: $lib (needed by $f) is not in /lib/$triple or /usr/lib/$triple" >&2; exit 1; }
        echo "$path"
        next="$next $path"
      done
    done
    todo=$next
  done
}
if [ -n "$bindir" ]; then
  fs=$out/initramfs
  mv "$fs/init" "$fs/vm_guest"
  mkdir -p "$fs/bin"
  busybox=$(echo "$kernels" | grep -- "/busybox-$arch\$" || true)
  [ -n "$busybox" ] || busybox=$(command -v busybox)
  cp "$busybox" "$fs/bin/busybox"
  cp "$bindir/hwwatchd" "$bindir/hwwatch" "$fs/bin/"
  cp "$debugger" "$fs/vm_debugger"
  cp "$bindir/hwwatch-example-watch-child" "$fs/"
  for p in $programs; do cp "$p" "$fs/"; done
  # Their shared libraries, at the same paths.
  # shellcheck disable=SC2086
  libs=$(needed "$bindir/hwwatchd" "$bindir/hwwatch" "$debugger" \
         "$bindir/hwwatch-example-watch-child" $programs) || exit 1
  for lib in $(echo "$libs" | sort -u); do
    cp --parents -L "$lib" "$fs"
  done
  $cc -O1 -g -static -no-pie "$here/guest/vm_counter.c" -o "$fs/vm_counter"
  nm "$fs/vm_counter" | awk '$3 == "count_up" { print "0x" $1 }' >"$fs/count_up.addr"
  cp "$here/guest/init-daemon.sh" "$fs/init"
  chmod +x "$fs/init"
  memory=1024
fi
(cd "$out/initramfs" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out/initrd.gz"

echo "boot.sh: booting $kernel"
start=$(date +%s)
# shellcheck disable=SC2086
timeout --kill-after=10 "$timeout_s" $qemu -accel tcg -m "$memory" -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$out/initrd.gz" \
  -append "console=$console quiet loglevel=3 panic=-1" </dev/null >"$out/console.log" 2>&1 || true
echo "boot.sh: the machine ran $(( $(date +%s) - start )) s; its console:"
tr -d '\r' <"$out/console.log" | tee "$out/console.txt" | grep -v '^\s*$' || true
grep -q '^GUEST DONE' "$out/console.txt" || {
  echo "boot.sh: the $arch guest did not finish (no 'GUEST DONE' within ${timeout_s}s)" >&2
  exit 1
}
