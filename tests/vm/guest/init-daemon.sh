#!/bin/busybox sh
# /init of the x86_64 machine: the real-hit matrix, then hwwatchd and its
# clients inside the guest (the daemon, `hwwatch watch`, a debugger-style
# client with stop delivery), then power off. Prints CASE lines that the
# vm_x86_64_* ctest cases check, and "GUEST DONE" last.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
mount -t tmpfs tmp /tmp
echo

/vm_guest

arch=x86_64
# R5 where Yama exists (this guest's kernel; the host's has none): the
# authorization matrix under ptrace_scope 0, 1 and 2, with its own daemon.
HWWATCH_BIN_DIR=/bin HWWATCH_REQUIRE_YAMA=1 /authz_matrix_test >/tmp/authz.out 2>&1
rc=$?
cat /tmp/authz.out
summary=$(grep '^authz matrix:' /tmp/authz.out)
if [ "$rc" = 0 ] && echo "$summary" | grep -q 'Yama scopes 0, 1, 2'; then
  echo "CASE $arch authz_yama PASS: $summary"
else
  echo "CASE $arch authz_yama FAIL: exit $rc; ${summary:-no summary}"
fi
# Capture at the trap (BPF) on Debian's kernel, where the registers always
# fire: exact values, filters, short-lived threads, accounting, fallback.
HWWATCH_BIN_DIR=/bin HWWATCH_REQUIRE_FIRES=1 /capture_test >/tmp/capture.out 2>&1
rc=$?
grep -E '^\[ +(OK|FAILED|SKIPPED) +\]|Failure|Expected|Which is|Actual|error' /tmp/capture.out | head -60
passed=$(grep -c '^\[       OK \]' /tmp/capture.out)
if [ "$rc" = 0 ] && [ "$passed" -ge 8 ] && ! grep -q SKIPPED /tmp/capture.out; then
  echo "CASE $arch capture PASS: capture_test, $passed cases, none skipped (BPF at the trap)"
else
  echo "CASE $arch capture FAIL: exit $rc, $passed cases passed"
fi
hwwatchd --socket /tmp/h.sock --log-level warn 2>/tmp/hwwatchd.log &
daemon=$!
i=0
while [ ! -S /tmp/h.sock ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
[ -S /tmp/h.sock ] || { echo "CASE $arch daemon_watch FAIL: hwwatchd did not start"; cat /tmp/hwwatchd.log; }

/vm_counter >/tmp/counter.out &
counter=$!
sleep 0.5
read -r pid addr </tmp/counter.out
# A second session watching the same bytes shares the registers and gets
# its own hits.
hwwatch --socket /tmp/h.sock watch --pid "$pid" "$addr" --len 4 --count 40 --timeout 60 \
  >/tmp/watch2.out 2>/tmp/watch2.err &
second=$!
# Until that session holds its reservation (it prints "watching").
i=0
while ! grep -q '^watching' /tmp/watch2.err 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
hwwatch --socket /tmp/h.sock watch --pid "$pid" "$addr" --len 4 --count 3 --timeout 60 \
  >/tmp/watch.out 2>/tmp/watch.err
rc=$?
echo "--- hwwatch watch --pid $pid $addr --len 4 --count 3 (exit $rc)"
cat /tmp/watch.err /tmp/watch.out
echo "---"
# Each hit: the ip is just after the store in count_up() (x86 reports data
# hits after the access), the address is the counter's, and the value went
# up by one (the first hit's old value is read by the CLI just after arming,
# and a write may race that read: it is not checked).
fn=$(cat /count_up.addr)
# check_hits FILE: "hits wrong-ip wrong-address wrong-value" of a watch output.
check_hits() {
  awk -v fn=$((fn)) -v addr="$addr" '
  / -> / {
    n++
    for (i = 1; i < NF; i++) {
      if ($i == "ip") ip = $(i + 1)
      if ($i == "addr") a = $(i + 1)
    }
    ipv = 0
    for (k = 3; k <= length(ip); k++) ipv = ipv * 16 + index("0123456789abcdef", substr(ip, k, 1)) - 1
    if (ipv <= fn || ipv > fn + 64) bad_ip++
    if (a != addr) bad_addr++
    if (n > 1 && $NF != $(NF - 2) + 1) bad_value++
  }
  END { printf "%d %d %d %d", n, bad_ip, bad_addr, bad_value }' "$1"
}
result=$(check_hits /tmp/watch.out)
set -- $result
if [ "$rc" = 0 ] && [ "$1" = 3 ] && [ "$2" = 0 ] && [ "$3" = 0 ] && [ "$4" = 0 ]; then
  echo "CASE $arch daemon_watch PASS: 3 hits in count_up() on the counter, the 2nd and 3rd old -> old+1"
else
  echo "CASE $arch daemon_watch FAIL: exit $rc, hits $1, wrong ip $2, wrong address $3, wrong value $4"
fi
wait $second
rc2=$?
hits2=$(grep -c ' -> ' /tmp/watch2.out)
shared=$(grep -c 'shared with 1 other' /tmp/watch.err)
cat /tmp/watch2.err
if [ "$rc2" = 0 ] && [ "$hits2" = 40 ] && [ "$shared" = 1 ]; then
  echo "CASE $arch daemon_watch_shared PASS: the later session shared the register of one running 40 hits; each got all its hits"
else
  echo "CASE $arch daemon_watch_shared FAIL: exit $rc2, hits $hits2, shared $shared"
fi

# The same through the ptrace backend (hwwatchd traces the counter and
# writes DR0-DR3 itself), then as perf stops the daemon takes (nobody else
# traces the counter). Each time the counter must run on afterwards,
# untraced and not stopped.
for how in ptrace stop; do
  case $how in
    ptrace) flags="--backend ptrace" ;;
    stop) flags="--stop" ;;
  esac
  hwwatch --socket /tmp/h.sock watch --pid "$pid" "$addr" --len 4 --count 3 --timeout 60 $flags \
    >/tmp/watch-$how.out 2>/tmp/watch-$how.err
  rc=$?
  echo "--- hwwatch watch --pid $pid $addr --len 4 --count 3 $flags (exit $rc)"
  cat /tmp/watch-$how.err /tmp/watch-$how.out
  echo "---"
  set -- $(check_hits /tmp/watch-$how.out)
  sleep 0.3
  tracer=$(awk '/^TracerPid:/ { print $2 }' /proc/$pid/status 2>/dev/null)
  state=$(awk '/^State:/ { print $2 }' /proc/$pid/status 2>/dev/null)
  if [ "$rc" = 0 ] && [ "$1" = 3 ] && [ "$2" = 0 ] && [ "$3" = 0 ] && [ "$4" = 0 ] &&
    [ "$tracer" = 0 ] && [ "$state" != t ] && [ "$state" != T ]; then
    echo "CASE $arch daemon_watch_$how PASS: 3 hits in count_up(), old -> old+1; the counter runs on untraced"
  else
    echo "CASE $arch daemon_watch_$how FAIL: exit $rc, hits $1, wrong ip $2, wrong address $3, wrong value $4, tracer '$tracer', state '$state'"
  fi
done

# By name: hwwatch resolves `counter` in the running program (elfutils),
# and names the writing function and the variable in every hit line.
hwwatch --socket /tmp/h.sock watch --pid "$pid" --symbol counter --count 3 --timeout 60 \
  >/tmp/watch-sym.out 2>/tmp/watch-sym.err
rc=$?
echo "--- hwwatch watch --pid $pid --symbol counter --count 3 (exit $rc)"
cat /tmp/watch-sym.err /tmp/watch-sym.out
echo "---"
set -- $(check_hits /tmp/watch-sym.out)
named=$(grep -c ' count_up+0x[0-9a-f]* (vm_counter.c:[0-9]*) .* counter ' /tmp/watch-sym.out)
if [ "$rc" = 0 ] && [ "$1" = 3 ] && [ "$3" = 0 ] && [ "$4" = 0 ] && [ "$named" = 3 ]; then
  echo "CASE $arch daemon_watch_symbol PASS: 3 hits on counter, each naming count_up (file:line) and counter, old -> old+1"
else
  echo "CASE $arch daemon_watch_symbol FAIL: exit $rc, hits $1, wrong address $3, wrong value $4, named lines $named"
fi
kill $counter 2>/dev/null

# The client library's example: a child's variable watched from C++.
HWWATCH_SOCKET=/tmp/h.sock /hwwatch-example-watch-child 3 >/tmp/example.out 2>&1
rc=$?
cat /tmp/example.out
values=$(awk '/^hit / { printf "%s,", $NF }' /tmp/example.out)
if [ "$rc" = 0 ] && [ "$values" = "1,2,3," ]; then
  echo "CASE $arch client_example PASS: 3 hits with values 1, 2, 3"
else
  echo "CASE $arch client_example FAIL: exit $rc, values '$values'"
fi

/vm_debugger /tmp/h.sock

# R3: hwwatchd killed with SIGKILL while watches of every kind are armed on
# targets that keep writing: perf samples (A), perf stops the daemon takes
# (B), ptrace on a chosen slot (C, writing; D, sleeping). perf's events die
# with the daemon: A and B must run on. Registers written through ptrace
# outlive it: C dies of SIGTRAP at its next write, and the restarted daemon
# must clear D's leftover from its journal before it serves.
uptime_cs() { awk '{ split($1, t, "."); print t[1] * 100 + t[2] }' /proc/uptime; }
/vm_counter >/tmp/a.out & a=$!
/vm_counter >/tmp/b.out & b=$!
/vm_counter >/tmp/c.out & c=$!
sleep 1000 & dpid=$!
sleep 0.5
read -r _ a_addr </tmp/a.out
read -r _ b_addr </tmp/b.out
read -r _ c_addr </tmp/c.out
hwwatch --socket /tmp/h.sock reserve --pid $a "$a_addr" --len 4 --hold 600 >/dev/null 2>&1 &
hwwatch --socket /tmp/h.sock reserve --pid $b "$b_addr" --len 4 --stop --hold 600 >/dev/null 2>&1 &
hwwatch --socket /tmp/h.sock reserve --pid $c "$c_addr" --len 4 --slot 1 --hold 600 >/dev/null 2>&1 &
hwwatch --socket /tmp/h.sock reserve --pid $dpid 0x10000 --len 8 --slot 2 --hold 600 >/dev/null 2>&1 &
sleep 1
armed=$(hwwatch --socket /tmp/h.sock list --all | grep -c 'weight 1')
# A thread stopped at a hit when its tracer dies gets that SIGTRAP (the
# kernel delivers a stop's signal on detach): the one window left, some
# microseconds per hit (milliseconds under emulation). Kill the daemon just
# after one of B's stops ends: its next write is 50 ms away.
i=0
while [ "$(awk '/^State:/ { print $2 }' /proc/$b/status)" != t ] && [ $i -lt 2000 ]; do i=$((i + 1)); done
while [ "$(awk '/^State:/ { print $2 }' /proc/$b/status)" = t ] && [ $i -lt 4000 ]; do i=$((i + 1)); done
kill -9 $daemon
wait $daemon 2>/dev/null
sleep 1
state() { awk '/^State:/ { print $2 }' /proc/$1/status 2>/dev/null || echo gone; }
wait $c
c_status=$?
a_state=$(state $a); b_state=$(state $b); d_state=$(state $dpid)
t0=$(uptime_cs)
hwwatchd --socket /tmp/h.sock --log-level info >/tmp/hwwatchd2.log 2>&1 &
daemon=$!
cleared=""
i=0
while [ $i -lt 60 ]; do
  if grep -q "cleared 1 debug register(s) a previous hwwatchd left on thread $dpid " /tmp/hwwatchd2.log; then
    cleared=$(( ($(uptime_cs) - t0) * 10 )); break
  fi
  sleep 0.05; i=$((i + 1))
done
cat /tmp/hwwatchd2.log
d_tracer=$(awk '/^TracerPid:/ { print $2 }' /proc/$dpid/status)
echo "crash: armed $armed; after the kill: A $a_state, B $b_state, C exit $c_status, D $d_state; cleared D in ${cleared:-never} ms"
if [ "$armed" = 4 ] && [ "$a_state" != gone ] && [ "$a_state" != t ] && [ "$a_state" != T ] &&
  [ "$b_state" != gone ] && [ "$b_state" != t ] && [ "$b_state" != T ] &&
  [ "$c_status" = 133 ] && [ -n "$cleared" ] && [ "$cleared" -le 1000 ] && [ "$d_tracer" = 0 ]; then
  echo "CASE $arch daemon_crash PASS: perf samples and daemon-taken stops ran on (not stopped); the ptrace-watched writer died of SIGTRAP in the window (1 of 1); the restarted daemon cleared the sleeping target's leftover register in ${cleared} ms"
else
  echo "CASE $arch daemon_crash FAIL: armed $armed, A $a_state, B $b_state, C exit $c_status (133 = SIGTRAP), D cleared '${cleared}' ms, D tracer '$d_tracer'"
fi
kill $a $b $dpid 2>/dev/null

kill $daemon
wait $daemon
echo "GUEST DONE"
poweroff -f
