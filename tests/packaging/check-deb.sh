#!/bin/sh
# check-deb.sh BUILD_DIR VERSION: builds the Debian package of BUILD_DIR
# (cmake --build BUILD_DIR --target package) and checks what a user gets
# from it: the file name, Depends from dpkg-shlibdeps, every file in place,
# units that run the packaged daemon, maintainer scripts, man pages that
# render without warnings, packaged programs that start, and bash
# completion that completes commands and options. Installing it under
# systemd is the systemd guest's job.
set -eu
build=$1
version=$2
fail() { echo "check-deb: $*" >&2; exit 1; }

cmake --build "$build" --target package >"$build/package.log" 2>&1 ||
  { cat "$build/package.log"; fail "cmake --build $build --target package failed"; }
arch=$(dpkg --print-architecture)
deb=$build/hwwatch_${version}_${arch}.deb
[ -f "$deb" ] || fail "no $deb (found: $(ls "$build"/*.deb 2>/dev/null))"

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# What dpkg-shlibdeps must have found in the programs' ELF files.
for lib in libgrpc++ libprotobuf libbpf1 libsystemd0 libdw1 libspdlog libc6 init-system-helpers; do
  echo "$depends" | grep -q "$lib" || fail "Depends lacks $lib"
done

files=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
for f in ./usr/sbin/hwwatchd ./usr/bin/hwwatch \
         ./usr/lib/systemd/system/hwwatchd.service ./usr/lib/systemd/system/hwwatchd.socket \
         ./usr/share/man/man8/hwwatchd.8.gz ./usr/share/man/man1/hwwatch.1.gz \
         ./usr/share/bash-completion/completions/hwwatch \
         ./usr/share/bash-completion/completions/hwwatchd \
         ./usr/share/doc/hwwatch/README.md \
         ./usr/lib/python3/dist-packages/hwwatch/__init__.py \
         ./usr/lib/python3/dist-packages/hwwatch/client.py \
         ./usr/lib/python3/dist-packages/hwwatch/debugger.py \
         ./usr/lib/python3/dist-packages/hwwatch/v1/__init__.py \
         ./usr/lib/python3/dist-packages/hwwatch/v1/hwwatch_pb2.py \
         ./usr/lib/python3/dist-packages/hwwatch/v1/hwwatch_pb2_grpc.py \
         ./usr/share/hwwatch/hwwatch-gdb.py ./usr/share/hwwatch/hwwatch_lldb.py; do
  echo "$files" | grep -qx "$f" || fail "the package lacks $f"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/root"
dpkg-deb -e "$deb" "$tmp/control"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$tmp/root/usr/lib/systemd/system/hwwatchd.service")
[ "$exec_start" = /usr/sbin/hwwatchd ] || fail "the packaged unit runs '$exec_start', not /usr/sbin/hwwatchd"
for s in postinst prerm postrm; do
  [ -x "$tmp/control/$s" ] || fail "no executable $s"
  sh -n "$tmp/control/$s" || fail "$s: syntax"
done
grep -q 'deb-systemd-helper enable hwwatchd.socket' "$tmp/control/postinst" || fail "postinst does not enable the socket"
grep -q 'deb-systemd-invoke start hwwatchd.socket' "$tmp/control/postinst" || fail "postinst does not start the socket"
grep -q 'deb-systemd-invoke stop hwwatchd.socket hwwatchd.service' "$tmp/control/prerm" || fail "prerm does not stop the service"

for page in man8/hwwatchd.8 man1/hwwatch.1; do
  out=$(gzip -dc "$tmp/root/usr/share/man/$page.gz" | groff -man -Tutf8 -ww -z 2>&1) || fail "$page: groff failed"
  [ -z "$out" ] || fail "$page: groff warns: $out"
  gzip -dc "$tmp/root/usr/share/man/$page.gz" | grep -q "hwwatch $version" || fail "$page: not version $version"
done

# The packaged programs run against this host's libraries.
"$tmp/root/usr/sbin/hwwatchd" --help >/dev/null || fail "packaged hwwatchd --help failed"
"$tmp/root/usr/bin/hwwatch" --help >/dev/null || fail "packaged hwwatch --help failed"

# The packaged Python client imports with Debian's python3 alone, and the
# packaged GDB script finds it from /usr/share/hwwatch.
PYTHONPATH="$tmp/root/usr/lib/python3/dist-packages" /usr/bin/python3 -c 'import hwwatch; hwwatch.pb.Refusal' ||
  fail "the packaged Python client does not import"
if command -v gdb >/dev/null; then
  out=$(cd / && gdb -nx -batch -ex "source $tmp/root/usr/share/hwwatch/hwwatch-gdb.py" -ex 'help hw-watch' 2>&1)
  echo "$out" | grep -q 'hw-watch \[-l\] EXPR' || fail "the packaged hwwatch-gdb.py does not load: $out"
fi

# Completion, as bash-completion loads it.
[ -r /usr/share/bash-completion/bash_completion ] || fail "bash-completion is not installed"
complete_words() {
  PATH="$tmp/root/usr/bin:$tmp/root/usr/sbin:$PATH" bash -c '
    . /usr/share/bash-completion/bash_completion
    . "$0"
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    case $1 in hwwatchd) _hwwatchd ;; *) _hwwatch ;; esac
    printf "%s\n" "${COMPREPLY[@]}"' "$tmp/root/usr/share/bash-completion/completions/hwwatch" "$@"
}
got=$(complete_words hwwatch s | tr '\n' ' ')
[ "$got" = "stats selftest slots " ] || fail "completion: 'hwwatch s' offers '$got', not 'stats selftest slots'"
complete_words hwwatch --json sl | grep -qx slots || fail "completion: 'hwwatch --json sl' does not offer slots"
complete_words hwwatch watch --ch | grep -qx -- --changed || fail "completion: 'hwwatch watch --ch' does not offer --changed"
complete_words hwwatch watch --access "" | grep -qx rw || fail "completion: --access does not offer rw"
complete_words hwwatchd --bpf | grep -qx -- --bpf-max-watches || fail "completion: 'hwwatchd --bpf' does not offer --bpf-max-watches"
echo "check-deb: $deb is complete"
