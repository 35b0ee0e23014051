#!/bin/sh
# check-case.sh CONSOLE ARCH CASE: passes when the guest's console shows
# "CASE ARCH CASE PASS", prints the guest's line either way. On a failure it
# also prints what the guest printed since the CASE line before it (the
# commands' output the verdict was made from), so a CI log says why.
set -eu
line=$(grep "^CASE $2 $3 " "$1" 2>/dev/null || true)
if [ -z "$line" ]; then
  echo "no result for $2 $3 in $1 (did vm_boot_$2 run?)" >&2
  exit 1
fi
echo "$line"
echo "$line" | grep -q "^CASE $2 $3 PASS:" && exit 0
echo "--- the guest's console before that line (at most 80 lines):"
awk -v want="CASE $2 $3 " '
  index($0, want) == 1 { exit }
  /^CASE / { n = 0; next }
  { buf[n++ % 80] = $0 }
  END { for (i = (n > 80 ? n - 80 : 0); i < n; i++) print buf[i % 80] }' "$1"
exit 1
