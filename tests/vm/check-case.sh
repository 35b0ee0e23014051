#!/bin/sh
# check-case.sh CONSOLE ARCH CASE: passes when the guest's console shows
# "CASE ARCH CASE PASS", prints the guest's line either way.
set -eu
line=$(grep "^CASE $2 $3 " "$1" 2>/dev/null || true)
if [ -z "$line" ]; then
  echo "no result for $2 $3 in $1 (did vm_boot_$2 run?)" >&2
  exit 1
fi
echo "$line"
echo "$line" | grep -q "^CASE $2 $3 PASS:"
