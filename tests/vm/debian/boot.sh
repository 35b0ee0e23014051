#!/bin/sh
# boot.sh DEB|BUILD_DIR OUTDIR: boots a full Debian 12 amd64 system
# (systemd as PID 1) under QEMU software emulation (TCG: the debug
# exceptions are emulated, whatever the host's hypervisor does) and checks
# the hwwatch package DEB in it as an operator meets it
# (tests/vm/debian/guest-check.sh, run by a oneshot unit). Given a
# BUILD_DIR, the package is first made from what that tree has built, with
# cpack ($CPACK, default cpack: it installs, it compiles nothing), in
# OUTDIR/deb. The root file system is the cached image of image.sh,
# unpacked from an initramfs (rdinit=/sbin/init: no disk, no modules),
# followed by a small per-boot archive with DEB, the check, its unit and
# the static programs it watches (vm_counter, writer). Writes the serial
# console to OUTDIR/console.txt and fails unless the guest printed "GUEST
# DONE"; the vm_debian_amd64_<case> ctest cases judge its CASE lines. QEMU
# is bounded by a timeout and killed with its process group when this
# script is interrupted.
set -eu
deb=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${HWWATCH_VM_TIMEOUT:-900}
fail() { echo "boot.sh: $*" >&2; exit 1; }
umask 022

rm -rf "$out"
mkdir -p "$out"
if [ -d "$deb" ]; then
  build=$deb
  "${CPACK:-cpack}" --config "$build/CPackConfig.cmake" -G DEB -B "$out/deb" >"$out/cpack.log" 2>&1 ||
    { cat "$out/cpack.log"; fail "cpack in $build failed (is the tree built?)"; }
  rm -rf "$out/deb/_CPack_Packages"
  deb=$(ls "$out"/deb/hwwatch_*.deb 2>/dev/null) || fail "cpack in $build made no hwwatch_*.deb"
  echo "boot.sh: packed $deb"
fi
[ -f "$deb" ] || fail "no package $deb"
kernel=$(sh "$here/../setup.sh" | grep -- '-amd64/') || fail "tests/vm/setup.sh found no amd64 kernel"
t0=$(date +%s)
image=$(sh "$here/image.sh" "$deb") || fail "image.sh could not provide the Debian image"
echo "boot.sh: image $image ready in $(( $(date +%s) - t0 )) s"

fs=$out/overlay
mkdir -p "$fs/srv/hwwatch" "$fs/etc/systemd/system/multi-user.target.wants"
cp "$deb" "$fs/srv/hwwatch/"
cp "$here/guest-check.sh" "$fs/srv/hwwatch/guest-check.sh"
# The GDB tests (tests/debuggers) with their target program, built by the
# tree (the guest is Debian 12 too, so its libc runs it).
mkdir -p "$fs/srv/hwwatch/debuggers"
for f in harness.py test_gdb.py dbg_target.c; do
  cp "$here/../../debuggers/$f" "$fs/srv/hwwatch/debuggers/"
done
if [ -n "${build:-}" ]; then
  cp "$build/tests/dbg_target" "$fs/srv/hwwatch/debuggers/" ||
    fail "no $build/tests/dbg_target (is the tree built?)"
fi
for prog in "$here/../guest/vm_counter.c" "$here/writer.c"; do
  name=$(basename "$prog" .c)
  gcc -O1 -g -static -no-pie "$prog" -o "$fs/srv/hwwatch/$name" || fail "building the static $name failed"
done
# After everything else has started, like an operator logging in; the
# machine powers off when the check ends, whatever its outcome.
cat >"$fs/etc/systemd/system/hwwatch-guest-check.service" <<EOF
[Unit]
Description=hwwatch package checks (tests/vm/debian/guest-check.sh)
After=multi-user.target
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate

[Service]
Type=oneshot
ExecStart=/bin/sh /srv/hwwatch/guest-check.sh /srv/hwwatch
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TimeoutStartSec=$((timeout_s - 60))

[Install]
WantedBy=multi-user.target
EOF
ln -s ../hwwatch-guest-check.service "$fs/etc/systemd/system/multi-user.target.wants/"
# Appended to the cached archive (the kernel unpacks concatenated cpio
# archives in order). Without a "." entry: its mode would become /'s.
(cd "$fs" && find . -mindepth 1 | cpio -o -H newc --quiet) >"$out/overlay.cpio"
cat "$image" "$out/overlay.cpio" >"$out/initrd.cpio"
rm -rf "$fs" "$out/overlay.cpio"

echo "boot.sh: booting $kernel"
start=$(date +%s)
# timeout leads its own process group: take QEMU down with this script.
# No transparent huge pages: under TCG, khugepaged collapsing GDB's memory
# held a CPU for minutes (soft lockups, the GDB case never ended).
qemu=""
trap '[ -z "$qemu" ] || kill -TERM -"$qemu" 2>/dev/null; exit 130' INT TERM HUP
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -M q35 -cpu max -accel tcg -m 2048 -smp 1 \
  -nographic -no-reboot -nic none \
  -kernel "$kernel" -initrd "$out/initrd.cpio" \
  -append "console=ttyS0 rdinit=/sbin/init quiet loglevel=3 panic=-1 transparent_hugepage=never" \
  </dev/null >"$out/console.log" 2>&1 &
qemu=$!
wait "$qemu" || true
trap - INT TERM HUP
rm -f "$out/initrd.cpio"
echo "boot.sh: the machine ran $(( $(date +%s) - start )) s; its console:"
tr -d '\r' <"$out/console.log" | tee "$out/console.txt" | grep -v '^\s*$' || true
grep -q '^GUEST DONE' "$out/console.txt" ||
  fail "the Debian guest did not finish (no 'GUEST DONE' within ${timeout_s}s)"
