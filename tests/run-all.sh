#!/bin/sh
# Builds hwwatch and runs every test: the full suite in a release build
# with Debian's flags (which also makes and checks the Debian package, and
# boots the emulated machines, the arm64 one with a cross-built daemon),
# then the engine and service suites again under ASan+UBSan and TSan (and
# the release concurrency test's 64 clients against each sanitized daemon),
# then the libFuzzer targets (clang) for a bounded time each.
# Tests run one at a time: the kernel tests share the host's real slots.
set -eu
cd "$(dirname "$0")/.."

# The main build takes Debian's compiler and linker flags (dpkg-buildflags:
# _FORTIFY_SOURCE, the stack protector, relro), as a package build does;
# package_deb makes the package from it. (CMake reads these at the first
# configure; CPPFLAGS it does not read at all.)
cppflags=$(dpkg-buildflags --get CPPFLAGS)
CFLAGS="$(dpkg-buildflags --get CFLAGS) $cppflags" CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $cppflags" \
  LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" \
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHWWATCH_WERROR=ON
# The emulated machines' downloads (Debian's kernels, arm64's busybox and
# -dev packages) go on while the main build compiles: they wait on the
# network, the build on the CPUs.
(sh tests/vm/setup.sh && sh tests/vm/cross-build.sh --packages-only) >build/vm-prefetch.log 2>&1 &
prefetch=$!
cmake --build build
wait $prefetch || { cat build/vm-prefetch.log; echo "run-all.sh: preparing the emulated machines failed" >&2; exit 1; }
ctest --test-dir build --output-on-failure -LE vm
# The emulated machines share nothing with the host's registers or with
# each other: two at a time (each mostly waits on its own emulated CPUs;
# three at once on two cores slowed the guests' daemons past their own
# bounds), after the tests that use the host's slots.
ctest --test-dir build --output-on-failure -L vm -j2

for san in address thread; do
  cmake -S . -B "build-$san" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHWWATCH_SANITIZE="$san" -DHWWATCH_WERROR=ON
  cmake --build "build-$san" --target hwwatch_sanitized_tests
  ctest --test-dir "build-$san" --output-on-failure -L 'engine|service'
  # R7 with 64 clients: the release-built clients (64 sanitized client
  # threads, not the daemon, were the bottleneck) against this sanitized
  # daemon, which stops at its first report and must exit 0.
  HWWATCH_BIN_DIR="$PWD/build-$san/bin" HWWATCH_STRESS_CLIENTS=64 HWWATCH_STRESS_OPS=1000 \
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=16 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build/tests/concurrency_test
done

cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHWWATCH_FUZZ=ON -DHWWATCH_WERROR=ON
# The whole daemon library too: the clang build checks its lock
# annotations (-Wthread-safety -Werror).
cmake --build build-fuzz --target hwwatch_fuzzers hwwatch_daemon
ctest --test-dir build-fuzz --output-on-failure -L fuzz
