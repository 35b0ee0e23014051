#!/bin/sh
# image.sh DEB: prints the path of a cached Debian 12 amd64 root file
# system, packed as an uncompressed initramfs (cpio newc), in which the
# hwwatch package DEB installs with no network: systemd as PID 1, dbus,
# every package DEB's Depends names, and an unprivileged user "hwuser"
# (uid 1000). Built with mmdebstrap from Debian's archive on first use and
# kept under $HWWATCH_VM_CACHE (default /var/cache/hwwatch-vm) in
# debian-amd64-<hash>, the hash covering this script and the package list:
# a new Depends or a changed recipe builds a new image, never reuses a stale
# one. An image is built in a .part directory and renamed when complete, and
# is used only if its stamp holds its hash.
set -eu
deb=$1
cache=${HWWATCH_VM_CACHE:-/var/cache/hwwatch-vm}
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
suite=bookworm
mirror=http://deb.debian.org/debian
export DEBIAN_FRONTEND=noninteractive
fail() { echo "image.sh: $*" >&2; exit 1; }

[ -f "$deb" ] || fail "no package $deb"
for cmd in mmdebstrap:mmdebstrap cpio:cpio flock:util-linux; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need="${need:-} ${cmd#*:}"
done
if [ -n "${need:-}" ]; then
  apt-get update -qq || fail "apt-get update failed"
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null || fail "apt-get install$need failed"
fi

# The guest's packages: systemd as init, dbus (systemd-analyze asks the
# bus), passwd (useradd), procps, bash-completion (with systemd, the
# package's Recommends, so apt finds them all installed), usr-is-merged
# (else init-system-helpers' "usrmerge | usr-is-merged" brings usrmerge
# and 35 MiB of perl to an image that is merged already), gdb with
# python3-grpcio and python3-protobuf (the package's Suggests: the GDB
# extension and its Python client are tested in the guest, whose registers
# fire), and whatever the package's Depends name, first alternatives,
# versions left to apt.
depends=$(dpkg-deb -f "$deb" Depends) || fail "dpkg-deb -f $deb Depends failed"
[ -n "$depends" ] || fail "$deb has no Depends"
packages=$( (echo "systemd systemd-sysv dbus passwd procps bash-completion usr-is-merged"
             echo "gdb python3-grpcio python3-protobuf"
             echo "$depends" | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/:any//; s/ //g') |
           tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
hash=$( (cat "$self"; echo "$packages") | sha256sum | cut -c1-16)
name=debian-amd64-$hash
dir=$cache/$name

# ready: an image whose stamp is its hash and whose archive is there.
ready() { [ "$(cat "$dir/stamp" 2>/dev/null)" = "$hash" ] && [ -s "$dir/rootfs.cpio" ]; }
mkdir -p "$cache"
if ! ready; then
  # One builder at a time; a .part left by an interrupted build is redone.
  exec 9>"$cache/debian-amd64.lock"
  flock 9
fi
if ! ready; then
  if [ -e "$dir" ]; then
    echo "image.sh: $dir is incomplete (its stamp is not $hash): building it again" >&2
    rm -rf "$dir"
  fi
  echo "image.sh: building $name: $packages" >&2
  start=$(date +%s)
  rm -rf "$dir.part"
  mkdir -p "$dir.part"
  # No documentation, man pages or translations while building (the
  # image is packed into guest memory); the options are removed afterwards
  # so that the package under test installs as on any Debian system.
  # apt timers are masked: an apt run of their own at boot would hold the
  # dpkg lock that the test's apt-get install needs. No getty: the serial
  # console carries the test's output, and without udev its device unit
  # never appears.
  # shellcheck disable=SC2086
  mmdebstrap --mode=root --variant=apt --quiet \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --include="$(echo $packages | tr ' ' ',')" \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --uid 1000 hwuser' \
    --customize-hook='systemctl --quiet --root="$1" mask serial-getty@ttyS0.service getty.target apt-daily.timer apt-daily-upgrade.timer >/dev/null' \
    --customize-hook='rm -f "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap" "$1/etc/apt/apt.conf.d/99mmdebstrap"' \
    --customize-hook='echo debian-hwwatch >"$1/etc/hostname"; printf "127.0.0.1 localhost\n127.0.1.1 debian-hwwatch\n" >"$1/etc/hosts"' \
    "$suite" "$dir.part/root" "$mirror" >&2 ||
    { rm -rf "$dir.part"; fail "mmdebstrap $suite from $mirror failed (is $mirror reachable?)"; }
  root=$dir.part/root
  # A fixed machine id (mmdebstrap leaves it empty): not a first boot, so
  # systemd applies no presets and the journal has a stable directory.
  echo "$hash$hash" >"$root/etc/machine-id"
  # The kernel opens /dev/console for init before systemd mounts devtmpfs.
  [ -c "$root/dev/console" ] || mknod -m 600 "$root/dev/console" c 5 1
  # Uncompressed: the emulated kernel unpacks it faster than it inflates it.
  (cd "$root" && find . | cpio -o -H newc --quiet) >"$dir.part/rootfs.cpio" ||
    { rm -rf "$dir.part"; fail "packing $root with cpio failed"; }
  rm -rf "$root"
  echo "$packages" >"$dir.part/packages"
  echo "$hash" >"$dir.part/stamp"
  mv "$dir.part" "$dir"
  # Older images (other hashes) are never used again.
  for old in "$cache"/debian-amd64-*; do
    [ "$old" = "$dir" ] || [ ! -d "$old" ] || rm -rf "$old"
  done
  echo "image.sh: built $name ($(du -m "$dir/rootfs.cpio" | cut -f1) MiB) in $(( $(date +%s) - start )) s" >&2
fi
ready || fail "$dir is not a complete image"
echo "$dir/rootfs.cpio"
