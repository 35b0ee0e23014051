#!/bin/busybox sh
# /init of the x86_64 and the aarch64 machine: the real-hit matrix, then
# hwwatchd and its clients inside the guest (the daemon, `hwwatch watch`, a
# debugger-style client with stop delivery), then power off. Prints CASE
# lines that the vm_<arch>_* ctest cases check, and "GUEST DONE" last.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
mount -t tmpfs tmp /tmp
echo

/vm_guest

arch=$(uname -m)
# R5 where Yama exists (this guest's kernel; the host's has none): the
# authorization matrix under ptrace_scope 0, 1 and 2, with its own daemon
# (in the x86_64 guest, which carries it).
if [ -x /authz_matrix_test ]; then
  HWWATCH_BIN_DIR=/bin HWWATCH_REQUIRE_YAMA=1 /authz_matrix_test >/tmp/authz.out 2>&1
  rc=$?
  cat /tmp/authz.out
  summary=$(grep '^authz matrix:' /tmp/authz.out)
  if [ "$rc" = 0 ] && echo "$summary" | grep -q 'Yama scopes 0, 1, 2'; then
    echo "CASE $arch authz_yama PASS: $summary"
  else
    echo "CASE $arch authz_yama FAIL: exit $rc; ${summary:-no summary}"
  fi
fi
# Capture at the trap (BPF) on Debian's kernel, where the registers always
# fire: exact values, filters, short-lived threads, accounting, fallback
# (in the x86_64 guest, which carries it).
if [ -x /capture_test ]; then
  HWWATCH_BIN_DIR=/bin HWWATCH_REQUIRE_FIRES=1 /capture_test >/tmp/capture.out 2>&1
  rc=$?
  grep -v -E '^\[ RUN|^\[----------\]|^\[==========\]|^ *$' /tmp/capture.out | head -100
  passed=$(grep -c '^\[       OK \]' /tmp/capture.out)
  if [ "$rc" = 0 ] && [ "$passed" -ge 8 ] && ! grep -q SKIPPED /tmp/capture.out; then
    echo "CASE $arch capture PASS: capture_test, $passed cases, none skipped (BPF at the trap)"
  else
    echo "CASE $arch capture FAIL: exit $rc, $passed cases passed"
  fi
fi
# The thread lister (a BPF task iterator over one process, Linux 6.1+) on
# Debian's kernel: the same threads as /proc, each on the CPU it was pinned to.
if [ -x /daemon_thread_lister_test ]; then
  /daemon_thread_lister_test >/tmp/lister.out 2>&1
  rc=$?
  passed=$(grep -c '^\[       OK \]' /tmp/lister.out)
  if [ "$rc" = 0 ] && [ "$passed" -ge 2 ]; then
    echo "CASE $arch thread_lister PASS: $passed cases"
  else
    grep -v -E '^\[ RUN|^\[----------\]|^ *$' /tmp/lister.out | head -40
    echo "CASE $arch thread_lister FAIL: exit $rc, $passed cases passed"
  fi
fi
hwwatchd --socket /tmp/h.sock --log-level warn 2>/tmp/hwwatchd.log &
daemon=$!
i=0
while [ ! -S /tmp/h.sock ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
[ -S /tmp/h.sock ] || { echo "CASE $arch daemon_watch FAIL: hwwatchd did not start"; cat /tmp/hwwatchd.log; }

# What the daemon reports of this machine: x86 has one mixed pool, arm64
# separate breakpoint and watchpoint pools; the capture program loads and
# both backends' self-tests fire.
hwwatch --socket /tmp/h.sock caps >/tmp/caps.out 2>&1
rc=$?
cat /tmp/caps.out
mixed=$(awk '/^  [0-9]+ mixed/ { print $1 }' /tmp/caps.out)
inst=$(awk '/^  [0-9]+ separate \(instruction\)/ { print $1 }' /tmp/caps.out)
data=$(awk '/^  [0-9]+ separate \(data\)/ { print $1 }' /tmp/caps.out)
case $arch in
  x86_64) [ "$mixed" = 4 ] && pools_ok=yes || pools_ok=no; pools="4 mixed" ;;
  *) [ -n "$inst" ] && [ -n "$data" ] && [ -z "$mixed" ] && pools_ok=yes || pools_ok=no
     pools="$inst breakpoint + $data watchpoint" ;;
esac
if [ "$rc" = 0 ] && [ "$pools_ok" = yes ] && grep -q '^capture: bpf' /tmp/caps.out &&
  [ "$(grep -c '^  \(perf\|ptrace\) *fires' /tmp/caps.out)" = 2 ]; then
  echo "CASE $arch daemon_caps PASS: pools $pools; capture bpf; perf and ptrace fire"
else
  echo "CASE $arch daemon_caps FAIL: exit $rc, pools '$mixed' mixed '$inst' instruction '$data' data"
fi

/vm_counter >/tmp/counter.out &
counter=$!
sleep 0.5
read -r pid addr </tmp/counter.out
# A second session watching the same bytes shares the registers and gets
# its own hits: the first one runs until the second is done (SIGTERM ends
# it cleanly), and every hit the second saw is one the first saw too.
hwwatch --socket /tmp/h.sock watch --pid "$pid" "$addr" --len 4 --timeout 120 \
  >/tmp/watch2.out 2>/tmp/watch2.err &
second=$!
# Until that session holds its reservation (it prints "watching").
i=0
while ! grep -q '^watching' /tmp/watch2.err 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
hwwatch --socket /tmp/h.sock watch --pid "$pid" "$addr" --len 4 --count 3 --timeout 60 \
  >/tmp/watch.out 2>/tmp/watch.err
rc=$?
echo "--- hwwatch watch --pid $pid $addr --len 4 --count 3 (exit $rc)"
cat /tmp/watch.err /tmp/watch.out
echo "---"
# Each hit: the ip is at the access in count_up() (x86 reports data hits
# after the access, so just after it; arm64 before it, so at it), the
# address is the counter's, and the value went up by one: each hit's old
# value is the one before it's plus one (both arches capture the old bytes
# exactly from the second hit on: x86 at the previous trap, arm64 at this
# one), and a new value read at the trap is old+1. A new value read at
# delivery (marked ~, arm64, where the trap comes before the write) is not
# checked; nor is the first hit's old value, which the CLI may read just
# after arming, racing a write.
fn=$(($(cat /count_up.addr)))
if [ "$arch" = aarch64 ]; then data_lo=$fn; data_hi=$((fn + 63)); else data_lo=$((fn + 1)); data_hi=$((fn + 64)); fi
# check_hits FILE [ADDR [LO HI]]: "hits wrong-ip wrong-address wrong-value"
# of a watch output: each hit's ip in [LO, HI] (default: the data access's
# range), its address ADDR (default: the counter's).
check_hits() {
  awk -v lo="${3:-$data_lo}" -v hi="${4:-$data_hi}" -v addr="${2:-$addr}" '
  function num(h,   v, k) {
    v = 0
    for (k = 3; k <= length(h); k++) v = v * 16 + index("0123456789abcdef", substr(h, k, 1)) - 1
    return v
  }
  / -> / {
    n++
    for (i = 1; i < NF; i++) {
      if ($i == "ip") ip = $(i + 1)
      if ($i == "addr") a = $(i + 1)
    }
    if (num(ip) < lo || num(ip) > hi) bad_ip++
    if (num(a) != num(addr)) bad_addr++
    old = $(NF - 2)
    if (n > 2 && old != prev + 1) bad_value++
    if (n > 1 && $NF !~ /^~/ && $NF != old + 1) bad_value++
    prev = old
  }
  END { printf "%d %d %d %d", n, bad_ip, bad_addr, bad_value }' "$1"
}
set -- $(check_hits /tmp/watch.out)
if [ "$rc" = 0 ] && [ "$1" = 3 ] && [ "$2" = 0 ] && [ "$3" = 0 ] && [ "$4" = 0 ]; then
  echo "CASE $arch daemon_watch PASS: 3 hits in count_up() on the counter, the 2nd and 3rd old -> old+1"
else
  echo "CASE $arch daemon_watch FAIL: exit $rc, hits $1, wrong ip $2, wrong address $3, wrong value $4"
fi
sleep 0.5
kill -TERM $second
wait $second
rc2=$?
hits2=$(grep -c ' -> ' /tmp/watch2.out)
shared=$(grep -c 'shared with 1 other' /tmp/watch.err)
# The second session's hits, by their time stamps, in the first's output.
missing=0
for t in $(awk '/ -> / { print $1 }' /tmp/watch.out); do
  grep -q "^$t " /tmp/watch2.out || missing=$((missing + 1))
done
cat /tmp/watch2.err
if [ "$rc2" = 0 ] && [ "$hits2" -ge 3 ] && [ "$shared" = 1 ] && [ "$missing" = 0 ]; then
  echo "CASE $arch daemon_watch_shared PASS: the later session shared the register of one running ($hits2 hits); each got all its hits (the later one's 3 are among the first one's)"
else
  echo "CASE $arch daemon_watch_shared FAIL: exit $rc2, hits $hits2, shared $shared, hits of the later session the first one missed $missing"
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

# Every access kind through the daemon and the CLI, on both backends:
# write, read_write, execute (count_up's first instruction) and, where the
# hardware has it (arm64), read. count_up() reads the counter, then writes
# it: a read_write watch sees both. Execute hits are at count_up itself.
if [ "$arch" = aarch64 ]; then kinds="w rw r x"; xlen=4; else kinds="w rw x"; xlen=1; fi
for backend in perf ptrace; do
  summary=""
  ok=yes
  for kind in $kinds; do
    if [ "$kind" = x ]; then at=$fn; len=$xlen; lo=$fn; hi=$fn; else at=$addr; len=4; lo=""; hi=""; fi
    hwwatch --socket /tmp/h.sock watch --pid "$pid" "$(printf 0x%x "$at")" --len $len --access $kind \
      --count 3 --timeout 60 --backend $backend >/tmp/acc.out 2>/tmp/acc.err
    rc=$?
    echo "--- hwwatch watch --pid $pid $(printf 0x%x "$at") --len $len --access $kind --backend $backend (exit $rc)"
    cat /tmp/acc.err /tmp/acc.out
    set -- $(check_hits /tmp/acc.out "$(printf 0x%x "$at")" ${lo:+$lo $hi})
    # Only writes change the value; reads and executes see it unchanged.
    [ "$kind" = w ] || set -- "$1" "$2" "$3" 0
    if [ "$rc" != 0 ] || [ "$1" != 3 ] || [ "$2" != 0 ] || [ "$3" != 0 ] || [ "$4" != 0 ]; then
      ok=no
      summary="$summary $kind: exit $rc, hits $1, wrong ip $2, wrong address $3, wrong value $4;"
    else
      summary="$summary $kind 3 hits;"
    fi
  done
  tracer=$(awk '/^TracerPid:/ { print $2 }' /proc/$pid/status 2>/dev/null)
  if [ "$ok" = yes ] && [ "$tracer" = 0 ]; then
    echo "CASE $arch daemon_access_$backend PASS:$summary each hit's ip and address exact"
  else
    echo "CASE $arch daemon_access_$backend FAIL:$summary tracer '$tracer'"
  fi
done

# A region over two registers: 16 bytes from the 8-byte word before the
# counter's, so the counter's word is the second register.
word=$((addr & ~7))
hwwatch --socket /tmp/h.sock watch --pid "$pid" "$(printf 0x%x $((word - 8)))" --len 16 --count 3 \
  --timeout 60 >/tmp/region.out 2>/tmp/region.err
rc=$?
echo "--- hwwatch watch --pid $pid $(printf 0x%x $((word - 8))) --len 16 --count 3 (exit $rc)"
cat /tmp/region.err /tmp/region.out
set -- $(check_hits /tmp/region.out "$(printf 0x%x $word)")
regs=$(grep -c ', 2 register(s)' /tmp/region.err)
if [ "$rc" = 0 ] && [ "$regs" = 1 ] && [ "$1" = 3 ] && [ "$2" = 0 ] && [ "$3" = 0 ]; then
  echo "CASE $arch daemon_region PASS: 16 bytes on 2 registers, 3 hits in count_up() at the counter's word"
else
  echo "CASE $arch daemon_region FAIL: exit $rc, 2 registers '$regs', hits $1, wrong ip $2, wrong address $3"
fi

# Both pools full at once, then one more of each refused: arm64 holds as
# many watchpoints (words after the counter's) and breakpoints
# (instructions of the program's text) as caps reported; x86's one pool of
# four takes two of each. On a counter of its own: the ptrace cases above
# left the first one registers the kernel keeps (disabled) until the
# thread ends, which hwwatchd counts and reuses for ptrace watches.
if [ "$arch" = aarch64 ]; then nd=$data; ni=$inst; else nd=2; ni=2; fi
/vm_counter >/tmp/pools.out &
pools_counter=$!
sleep 0.5
read -r ppid paddr </tmp/pools.out
pword=$((paddr & ~7))
holders=""
k=0
while [ $k -lt $((nd + ni)) ]; do
  if [ $k -lt "$nd" ]; then
    at=$((pword + 8 * k)); flags="--len 4 --access w"
  else
    at=$((fn + xlen * 4 * (k - nd))); flags="--len $xlen --access x"
  fi
  hwwatch --socket /tmp/h.sock reserve --pid "$ppid" "$(printf 0x%x $at)" $flags --hold 120 \
    >/tmp/hold.$k 2>&1 &
  holders="$holders $!"
  k=$((k + 1))
done
i=0
while [ "$(hwwatch --socket /tmp/h.sock list --all 2>/dev/null | grep -c 'weight 1 ')" -lt $((nd + ni)) ] &&
  [ $i -lt 40 ]; do sleep 0.25; i=$((i + 1)); done
hwwatch --socket /tmp/h.sock list --all >/tmp/held.out 2>&1
held=$(grep -c 'weight 1 ' /tmp/held.out)
for k in $(seq 0 $((nd + ni - 1))); do cat /tmp/hold.$k; done
hwwatch --socket /tmp/h.sock reserve --pid "$ppid" "$(printf 0x%x $((pword + 8 * nd)))" --len 4 \
  --hold 1 >/tmp/more-data.out 2>&1
rc_data=$?
hwwatch --socket /tmp/h.sock reserve --pid "$ppid" "$(printf 0x%x $((fn + xlen * 4 * ni)))" --len $xlen \
  --access x --hold 1 >/tmp/more-inst.out 2>&1
rc_inst=$?
cat /tmp/held.out
echo "--- $held held; one more watchpoint (exit $rc_data):"
cat /tmp/more-data.out
echo "--- one more breakpoint (exit $rc_inst):"
cat /tmp/more-inst.out
# shellcheck disable=SC2086
kill $holders 2>/dev/null
wait $holders 2>/dev/null
kill $pools_counter 2>/dev/null
if [ "$held" = $((nd + ni)) ] && [ "$rc_data" != 0 ] && [ "$rc_inst" != 0 ] &&
  grep -q 'slot' /tmp/more-data.out && grep -q 'slot' /tmp/more-inst.out; then
  echo "CASE $arch daemon_pools PASS: $nd watchpoints and $ni breakpoints held at once; one more of each refused: $(head -n1 /tmp/more-data.out) / $(head -n1 /tmp/more-inst.out)"
else
  echo "CASE $arch daemon_pools FAIL: held $held of $((nd + ni)), more data exit $rc_data, more inst exit $rc_inst"
fi

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

# Watches released at their first hit, on a writer that goes on every
# millisecond: the next hit's trap is often queued in the kernel when the
# daemon lets the thread go, and its SIGTRAP must never reach the writer
# (it did: the writer died within a few such watches). The ptrace backend,
# then perf stops the daemon takes.
/vm_counter 1 >/tmp/race.out &
racer=$!
sleep 0.5
read -r rpid raddr </tmp/race.out
rounds=15
race=""
for how in ptrace stop; do
  case $how in ptrace) flags="--backend ptrace" ;; stop) flags="--stop" ;; esac
  n=0
  k=0
  while [ $k -lt $rounds ] && [ -d /proc/$rpid ]; do
    hwwatch --socket /tmp/h.sock watch --pid "$rpid" "$raddr" --len 4 --count 1 --timeout 30 $flags \
      >/tmp/race-$how.out 2>/tmp/race-$how.err && n=$((n + 1))
    k=$((k + 1))
  done
  race="$race $how $n of $rounds;"
  [ $n = $rounds ] || { echo "--- last $how round:"; cat /tmp/race-$how.err /tmp/race-$how.out; }
done
sleep 0.3
rstate=$(awk '/^State:/ { print $2 }' /proc/$rpid/status 2>/dev/null || echo gone)
rtracer=$(awk '/^TracerPid:/ { print $2 }' /proc/$rpid/status 2>/dev/null)
kill $racer 2>/dev/null
wait $racer
rstatus=$?
if [ "$race" = " ptrace $rounds of $rounds; stop $rounds of $rounds;" ] && [ "$rstatus" = 143 ] &&
  [ "$rtracer" = 0 ] && [ "$rstate" != t ] && [ "$rstate" != T ]; then
  echo "CASE $arch daemon_release_race PASS:$race count-1 watches released at their first hit; the 1-ms writer ran on untraced and died of our SIGTERM only"
else
  echo "CASE $arch daemon_release_race FAIL:$race writer state '$rstate', tracer '$rtracer', exit $rstatus (143 = our SIGTERM, 133 = SIGTRAP)"
fi

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
/vm_counter 500 >/tmp/b.out & b=$!
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
i=0
while [ "$(hwwatch --socket /tmp/h.sock list --all | grep -c 'weight 1')" -lt 4 ] && [ $i -lt 60 ]; do
  sleep 0.5; i=$((i + 1))
done
armed=$(hwwatch --socket /tmp/h.sock list --all | grep -c 'weight 1')
# A thread stopped at a hit when its tracer dies gets that SIGTRAP (the
# kernel delivers a stop's signal on detach): the one window left, some
# microseconds per hit (milliseconds under emulation). Kill the daemon just
# after one of B's stops ends: B writes every 500 ms, so its next write is
# far away however slowly this machine polls.
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
# Cleared before it serves: by its first answer, the log has the line.
served=""
i=0
while [ $i -lt 120 ]; do
  if hwwatch --socket /tmp/h.sock caps >/dev/null 2>&1; then
    served=$(( ($(uptime_cs) - t0) * 10 )); break
  fi
  sleep 0.25; i=$((i + 1))
done
cleared=""
if [ -n "$served" ] && grep -q "cleared 1 debug register(s) a previous hwwatchd left on thread $dpid " /tmp/hwwatchd2.log; then
  cleared=$served
fi
cat /tmp/hwwatchd2.log
d_tracer=$(awk '/^TracerPid:/ { print $2 }' /proc/$dpid/status)
echo "crash: armed $armed; after the kill: A $a_state, B $b_state, C exit $c_status, D $d_state; D cleared before the first answer, ${served:-never} ms after the start: ${cleared:+yes}"
if [ "$armed" = 4 ] && [ "$a_state" != gone ] && [ "$a_state" != t ] && [ "$a_state" != T ] &&
  [ "$b_state" != gone ] && [ "$b_state" != t ] && [ "$b_state" != T ] &&
  [ "$c_status" = 133 ] && [ -n "$cleared" ] && [ "$d_tracer" = 0 ]; then
  echo "CASE $arch daemon_crash PASS: perf samples and daemon-taken stops ran on (not stopped); the ptrace-watched writer died of SIGTRAP in the window (1 of 1); the restarted daemon cleared the sleeping target's leftover register before its first answer (${cleared} ms after its start)"
else
  echo "CASE $arch daemon_crash FAIL: armed $armed, A $a_state, B $b_state, C exit $c_status (133 = SIGTRAP), D cleared '${cleared}' ms, D tracer '$d_tracer'"
fi
kill $a $b $dpid 2>/dev/null

kill $daemon
wait $daemon
echo "GUEST DONE"
poweroff -f
