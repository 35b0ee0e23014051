# hwwatch-gdb.py: GDB commands that take their hardware watchpoints from
# hwwatchd. Load it with `source /usr/share/hwwatch/hwwatch-gdb.py`.
#
#   hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]
#   hw-unwatch N
#   info hw-watches
#   hw-slots
#
# Each hw-watch is one stop-delivery reservation (DELIVERY_STOP) per thread
# of the inferior; threads started later are armed from the new-thread event,
# while GDB still holds them stopped, so before their first instruction.
# A hit is a SIGTRAP with si_code TRAP_PERF and the reservation id in
# si_perf_data. GDB does not know that kind of trap (linux-nat.c finds no
# stop reason for it), so a `catch signal SIGTRAP` whose condition is
# $_hwwatch_trap() looks at every SIGTRAP first: a trap of one of this
# session's reservations is reported here as GDB reports a watchpoint (or
# resumed silently when --changed or --if says so); every other SIGTRAP
# (GDB's breakpoints and steps, traps of others) goes on as GDB would
# handle it. SIGTRAP is "nopass", so no hit ever reaches the program.
#
# During next/step GDB may take a hit's SIGTRAP for its step's own (the
# two can merge: SIGTRAP does not queue); each stop compares the kernel's
# hit count of the thread's reservations with the traps seen here and
# reports the difference.
#
# The connection to hwwatchd ($HWWATCH_SOCKET or /run/hwwatchd/hwwatchd.sock)
# is the daemon's session: every reservation is released on detach, kill,
# the inferior's exit and quit, and by the daemon when GDB dies.

import os
import re
import sys

import gdb


def _import_hwwatch():
    try:
        import hwwatch.debugger  # noqa: F401
        return
    except ImportError:
        pass
    # Beside this file (the build tree), or the installed package:
    # <prefix>/share/hwwatch/ -> <prefix>/lib/python3/dist-packages.
    here = os.path.dirname(os.path.abspath(_SCRIPT))
    prefix = os.path.dirname(os.path.dirname(here))
    for d in (here, os.path.join(prefix, "lib", "python3", "dist-packages"),
              os.path.join(prefix, "lib", "python%d.%d" % sys.version_info[:2], "dist-packages")):
        if os.path.isfile(os.path.join(d, "hwwatch", "__init__.py")) and d not in sys.path:
            sys.path.append(d)
    import hwwatch.debugger  # noqa: F401


try:
    _SCRIPT = __file__
except NameError:  # an older GDB that sources without __file__
    _SCRIPT = gdb.current_progspace().filename or "."
_import_hwwatch()

from hwwatch.client import Error as _HwError  # noqa: E402
from hwwatch import debugger as _dbg  # noqa: E402

_M32 = 0xFFFFFFFF


def _which_thread(thread):
    """'Thread 2 "name" hit ', as GDB starts a stop line once the program
    has had more than one thread (infrun.c, show_thread_that_caused_stop)."""
    if thread.num <= 1 and all(t.num <= 1 for t in thread.inferior.threads()):
        return ""
    tid = "%d" % thread.num if len(gdb.inferiors()) == 1 else "%d.%d" % (
        thread.inferior.num, thread.num)
    name = thread.name
    return "Thread %s%s hit " % (tid, ' "%s"' % name if name else "")


class _Session:
    def __init__(self):
        self.book = _dbg.Book(label="gdb %d" % os.getpid())
        self.catchpoint = None
        # Global thread number -> what the trap decided to stop for, printed
        # by the stop event that follows.
        self.pending = {}
        self.inferior = None  # the inferior number the watches belong to

    # ------------------------------------------------------------ values

    def read(self, w):
        """(raw bytes, text) of the watched region now."""
        try:
            raw = bytes(gdb.selected_inferior().read_memory(w.address, w.length))
        except gdb.MemoryError as e:
            return None, "<unreadable: %s>" % e
        try:
            return raw, str(gdb.Value(raw, w.type))
        except Exception:
            return raw, "0x" + raw[::-1].hex()

    # ------------------------------------------------------------ the trap

    def catchpoint_on(self):
        if self.catchpoint is not None:
            return
        out = gdb.execute("catch signal SIGTRAP", to_string=True)
        m = re.search(r"Catchpoint (\d+)", out)
        if not m:
            raise gdb.GdbError("hw-watch: could not catch SIGTRAP: " + out.strip())
        self.catchpoint = int(m.group(1))
        gdb.execute("condition %d $_hwwatch_trap()" % self.catchpoint, to_string=True)
        # GDB prints nothing of its own for these stops; the stop event
        # prints the report (breakpoint commands would not do: in non-stop
        # mode they run only once the user selects the stopped thread).
        gdb.execute("commands %d\nsilent\nend" % self.catchpoint, to_string=True)

    def catchpoint_off(self):
        if self.catchpoint is None:
            return
        try:
            gdb.execute("delete %d" % self.catchpoint, to_string=True)
        except gdb.error:
            pass
        self.catchpoint = None

    def trap(self):
        """$_hwwatch_trap(): 1 to stop (a hit to report, or a SIGTRAP GDB
        would otherwise take as random), 0 to go on as GDB would."""
        try:
            si = gdb.parse_and_eval("$_siginfo")
            signo = int(si["si_signo"])
            code = int(si["si_code"])
        except gdb.error:
            return 0
        if signo != _dbg.SIGTRAP:
            return 0
        if code != _dbg.TRAP_PERF:
            # GDB's own traps (breakpoints, steps, its watchpoints): its
            # business. A trap the program sent itself stops, as without us.
            if code <= 0:
                self._pend("signal", None, None)
                return 1
            return 0
        pad = si["_sifields"]["_pad"]
        data = (int(pad[2]) & _M32) | ((int(pad[3]) & _M32) << 32)
        rid = _dbg.perf_trap(signo, code, data, int(pad[4]) & _M32)
        found = self.book.lookup(rid) if rid is not None else None
        if found is None:
            # Someone else's perf stop: GDB would stop for it ("received
            # signal SIGTRAP"), so stop and say so.
            self._pend("signal", None, None)
            return 1
        w, tid = found
        w.seen[rid] = w.seen.get(rid, 0) + 1
        raw, text = self.read(w)
        old_raw, old_text = w.last_raw, w.last_text
        if w.args.changed and raw == old_raw:
            return 0
        w.last_raw, w.last_text = raw, text
        if w.args.condition:
            try:
                if not bool(gdb.parse_and_eval(w.args.condition)):
                    return 0
            except gdb.error as e:
                gdb.write("Error in testing condition for hw-watch %d: %s\n" % (w.number, e))
        w.hits += 1
        self._pend("hit", w, (old_raw, old_text, raw, text))
        return 1

    def _pend(self, kind, w, values):
        self.pending.setdefault(gdb.selected_thread().global_num, []).append((kind, w, values))

    def report(self, thread):
        """Prints what the trap decided to stop `thread` for, as GDB prints
        its own watchpoints; True if it printed something."""
        pending = self.pending.pop(thread.global_num, [])
        for kind, w, values in pending:
            if kind == "signal":
                gdb.write("\nThread %d received signal SIGTRAP, Trace/breakpoint trap.\n"
                          % thread.num)
                continue
            old_raw, old_text, raw, text = values
            gdb.write("\n%s%s %d: %s\n\n" % (_which_thread(thread), w.kind, w.number, w.what))
            if w.args.access == "w" or old_raw != raw:
                gdb.write("Old value = %s\nNew value = %s\n" % (old_text, text))
            else:
                gdb.write("Value = %s\n" % text)
        if pending:
            selected = gdb.selected_thread()
            if selected != thread:
                thread.switch()  # non-stop: print the frame of the thread that hit
            frame = gdb.execute("frame", to_string=True)
            if selected is not None and selected != thread and selected.is_valid():
                selected.switch()
            gdb.write(re.sub(r"^#0\s+", "", frame))
        return bool(pending)

    # ------------------------------------------------------------ events

    def on_stop(self, event):
        t = getattr(event, "inferior_thread", None) or gdb.selected_thread()
        if t is None:
            return
        if self.pending:
            self.report(t)
        if not self.book.watches:
            return
        try:
            missed = self.book.unseen(tids={t.ptid[1]})
        except _HwError as e:
            gdb.write("hw-watch: cannot ask hwwatchd for hit counts: %s\n" % e)
            return
        for w, tid, n in missed:
            raw, text = self.read(w)
            gdb.write("\n%s %d: %s\n" % (w.kind, w.number, w.what))
            gdb.write("%d hit(s) in thread %d not reported as a stop: GDB took the trap for "
                      "its own step (the kernel counted them)\n" % (n, tid))
            if w.args.access == "w" or raw != w.last_raw:
                gdb.write("Old value = %s\nNew value = %s\n" % (w.last_text, text))
            w.last_raw, w.last_text = raw, text
            w.hits += n

    def on_new_thread(self, event):
        t = event.inferior_thread
        if not self.book.watches or t.inferior.num != self.inferior:
            return
        for w, e in self.book.arm_thread(t.ptid[1]):
            gdb.write("hw-watch %d: thread %d (LWP %d) is NOT watched: %s\n"
                      % (w.number, t.num, t.ptid[1], _dbg.refusal_text(e)))

    def release_all(self, why):
        n = self.book.release_all()
        self.catchpoint_off()
        if n:
            gdb.write("hw-watch: %d watch(es) released (%s)\n" % (n, why))

    def on_exited(self, event):
        if self.book.watches and getattr(event, "inferior", None) is not None \
                and event.inferior.num == self.inferior:
            self.release_all("the program exited")

    def on_gdb_exiting(self, _event):
        # Before GDB detaches or kills: a stop watch left on a thread nobody
        # traces would kill it with SIGTRAP at its next write.
        self.book.release_all()
        self.book.close()


_session = _Session()


class _TrapFunction(gdb.Function):
    """$_hwwatch_trap(): hwwatch's condition on its SIGTRAP catchpoint."""

    def __init__(self):
        super().__init__("_hwwatch_trap")

    def invoke(self):
        return _session.trap()


class _HwWatch(gdb.Command):
    """Watch memory with a hardware watchpoint that hwwatchd hands out.
Usage: hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]
  -l           watch the location EXPR names (always its address; -l only
               changes how the watch is shown)
  --access     w (writes, the default), rw (reads and writes), r (reads,
               where the hardware has it)
  --changed    stop only when the value changes
  --if COND    stop only when COND (the rest of the line) is true
Every thread of the program is watched, threads started later too.
When the registers run out, hwwatchd's refusal says who holds them."""

    def __init__(self):
        super().__init__("hw-watch", gdb.COMMAND_BREAKPOINTS, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg, from_tty):
        try:
            args = _dbg.parse_watch_args(arg)
        except _dbg.UsageError as e:
            raise gdb.GdbError(str(e))
        inf = gdb.selected_inferior()
        if inf.pid == 0:
            raise gdb.GdbError("hw-watch: the program is not being run")
        if _session.book.watches and _session.inferior != inf.num:
            raise gdb.GdbError("hw-watch: watches of inferior %d exist; "
                               "hw-unwatch them first" % _session.inferior)
        value = gdb.parse_and_eval(args.expr)
        if value.address is None:
            raise gdb.GdbError("hw-watch: cannot watch '%s': it has no address" % args.expr)
        address = int(value.address.cast(gdb.lookup_type("unsigned long")))
        vtype = value.type
        length = vtype.sizeof
        if length == 0:
            raise gdb.GdbError("hw-watch: '%s' has no size" % args.expr)
        w = _session.book.new_watch(args, address, length, str(vtype))
        w.type = vtype
        tids = [t.ptid[1] for t in inf.threads()]
        try:
            _session.book.add(w, tids)
        except _HwError as e:
            if e.unreachable:
                raise gdb.GdbError("hw-watch: %s" % e)
            raise gdb.GdbError(_dbg.refusal_text(e))
        _session.inferior = inf.num
        w.last_raw, w.last_text = _session.read(w)
        _session.catchpoint_on()
        rids = sorted(w.reservations.values())
        gdb.write("%s %d: %s (hwwatchd: %#x+%d on %d thread(s), reservation(s) %s)\n" % (
            w.kind, w.number, w.what, address, length, len(tids),
            ", ".join(str(r) for r in rids)))


class _HwUnwatch(gdb.Command):
    """Delete a hw-watch and give its registers back to hwwatchd.
Usage: hw-unwatch N (see info hw-watches)"""

    def __init__(self):
        super().__init__("hw-unwatch", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        try:
            w = _session.book.remove(_dbg.parse_number(arg))
        except _dbg.UsageError as e:
            raise gdb.GdbError(str(e))
        if not _session.book.watches:
            _session.catchpoint_off()
        gdb.write("hw-watch %d deleted (%s)\n" % (w.number, w.what))


class _InfoHwWatches(gdb.Command):
    """The hw-watches: number, access, address, hits reported and counted by
    the kernel, threads, and the hwwatchd reservations."""

    def __init__(self):
        super().__init__("info hw-watches", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        try:
            counts = _session.book.kernel_hits()
        except _HwError as e:
            gdb.write("(hwwatchd did not answer: %s)\n" % e)
            counts = {}
        gdb.write(_dbg.watches_table(_session.book.watches.values(), counts) + "\n")


class _HwSlots(gdb.Command):
    """Who holds the hardware debug registers, as hwwatchd accounts them."""

    def __init__(self):
        super().__init__("hw-slots", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        try:
            client = _session.book.connect()
            inf = gdb.selected_inferior()
            tids = [t.ptid[1] for t in inf.threads()] if inf.pid else []
            gdb.write(_dbg.slots_text(client, tids) + "\n")
        except _HwError as e:
            raise gdb.GdbError("hw-slots: %s" % e)


_TrapFunction()
_HwWatch()
_HwUnwatch()
_InfoHwWatches()
_HwSlots()

gdb.events.stop.connect(_session.on_stop)
gdb.events.new_thread.connect(_session.on_new_thread)
gdb.events.exited.connect(_session.on_exited)
if hasattr(gdb.events, "gdb_exiting"):
    gdb.events.gdb_exiting.connect(_session.on_gdb_exiting)

# Before GDB lets the program go (detach, kill, or a new run that kills
# it), give the registers back: a stop-delivery watch on a thread that
# nobody traces any more would kill it with SIGTRAP at its next write.
# (hook-quit is not needed: quit emits gdb_exiting before it detaches.)
for _cmd in ("detach", "kill", "run", "start", "starti"):
    gdb.execute("define hook-%s\nhw-watch-release %s\nend" % (_cmd, _cmd), to_string=True)


class _HwWatchRelease(gdb.Command):
    """(internal) Releases every hw-watch (run by hook-detach, hook-kill...)."""

    def __init__(self):
        super().__init__("hw-watch-release", gdb.COMMAND_MAINTENANCE)

    def invoke(self, arg, from_tty):
        _session.release_all(arg.strip() or "released")


_HwWatchRelease()
