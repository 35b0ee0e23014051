#!/bin/sh
# Builds hwwatch and runs every test: the full suite in a release build,
# then the engine and service suites again under ASan+UBSan and TSan, then
# the libFuzzer targets (clang) for a bounded time each.
# Tests run one at a time: the kernel tests share the host's real slots.
set -eu
cd "$(dirname "$0")/.."

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build
ctest --test-dir build --output-on-failure

for san in address thread; do
  cmake -S . -B "build-$san" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHWWATCH_SANITIZE="$san"
  cmake --build "build-$san" --target hwwatch_sanitized_tests
  ctest --test-dir "build-$san" --output-on-failure -L 'engine|service'
done

cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHWWATCH_FUZZ=ON
cmake --build build-fuzz --target hwwatch_fuzzers
ctest --test-dir build-fuzz --output-on-failure -L fuzz
