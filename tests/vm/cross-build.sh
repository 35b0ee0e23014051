#!/bin/sh
# cross-build.sh BUILDDIR | --packages-only: builds what the arm64 guest runs (hwwatchd, the
# CLI, the debugger-style client and the client example) for
# arm64 into BUILDDIR, with aarch64-linux-gnu-g++, Debian's arm64 multiarch
# -dev packages (installed here when missing) and
# cmake/aarch64-linux-gnu.cmake. -O1: the guest checks behaviour, and the
# build is on the CI's clock. Safe to run again: ninja rebuilds what changed.
# --packages-only installs the packages and stops (tests/run-all.sh does it
# while the main build compiles).
set -eu
out=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive
sh "$(dirname "$0")/setup.sh" >/dev/null
need=""
for p in libgrpc++-dev libprotobuf-dev libspdlog-dev libboost-dev libgtest-dev libgmock-dev \
         libdw-dev libelf-dev libsystemd-dev libbpf-dev; do
  dpkg -s "$p:arm64" >/dev/null 2>&1 || need="$need $p:arm64"
done
if [ -n "$need" ]; then
  echo "cross-build.sh: installing$need"
  apt-get install -y -qq --no-install-recommends $need >/dev/null ||
    { echo "cross-build.sh: apt-get install of the arm64 -dev packages failed" >&2; exit 1; }
fi
[ "$out" = --packages-only ] && exit 0
cmake -S "$root" -B "$out" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DCMAKE_C_FLAGS_RELEASE=-O1 \
  -DHWWATCH_WERROR=ON >/dev/null
cmake --build "$out" --target hwwatchd hwwatch vm_debugger hwwatch-example-watch-child capture_test \
  daemon_thread_lister_test
readelf -h "$out/bin/hwwatchd" | grep -q 'Machine: *AArch64' ||
  { echo "cross-build.sh: $out/bin/hwwatchd is not an arm64 program" >&2; exit 1; }
