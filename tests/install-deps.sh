#!/bin/sh
# Installs everything hwwatch needs to build and test, from Debian 12
# packages. Safe to run again. (The QEMU harness installs its own extras.)
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  ca-certificates cmake ninja-build g++ make pkg-config nlohmann-json3-dev \
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
  libspdlog-dev libboost-dev libcli11-dev libgtest-dev libgmock-dev \
  libdw-dev libelf-dev libsystemd-dev libbpf-dev bpftool \
  clang clang-format systemd procps python3 dpkg-dev groff-base bash-completion \
  python3-grpcio python3-protobuf gdb lldb-16 python3-lldb-16 binutils >/dev/null
