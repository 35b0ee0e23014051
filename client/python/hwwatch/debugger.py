"""What the GDB and LLDB extensions share: their command lines, the
watches they hold through hwwatchd (one stop-delivery reservation per
thread of the inferior), and the decoding of a TRAP_PERF stop.

Nothing here imports a debugger; each extension reads memory, evaluates
expressions and prints in its own way, and calls this bookkeeping.
"""

import shlex

from hwwatch.client import Client, Error, access_name, target, watch
from hwwatch.v1 import hwwatch_pb2 as pb

# <asm-generic/siginfo.h>: a perf event's SIGTRAP (perf_event_attr.sigtrap)
# carries si_code TRAP_PERF, attr.sig_data in si_perf_data and the event's
# type in si_perf_type; hwwatchd sets sig_data to the reservation id.
SIGTRAP = 5
TRAP_PERF = 6
PERF_TYPE_BREAKPOINT = 5

HIT_ACCESS_WORDS = {"w": "write", "rw": "read/write", "r": "read"}


class UsageError(Exception):
    pass


class WatchArgs:
    """hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]: COND is
    the rest of the line after --if (an expression of the debugger's
    language, evaluated at each hit)."""

    def __init__(self, expr, location=False, access="w", changed=False, condition=""):
        self.expr = expr
        self.location = location
        self.access = access
        self.changed = changed
        self.condition = condition


def parse_watch_args(line):
    line = line.strip()
    condition = ""
    # --if takes the rest of the line, so that COND may hold anything.
    for marker in (" --if ", "--if "):
        at = line.find(marker)
        if at >= 0 and (marker[0] == " " or at == 0):
            condition = line[at + len(marker):].strip()
            line = line[:at]
            if not condition:
                raise UsageError("--if needs a condition")
            break
    try:
        words = shlex.split(line, posix=False)
    except ValueError as e:
        raise UsageError(str(e)) from None
    location, access, changed, rest = False, "w", False, []
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-l", "-location"):
            location = True
        elif w == "--changed":
            changed = True
        elif w == "--access":
            if i + 1 >= len(words):
                raise UsageError("--access needs w, rw or r")
            access = words[i + 1]
            i += 1
        elif w.startswith("--access="):
            access = w.split("=", 1)[1]
        else:
            rest.append(w)
        i += 1
    if access not in ("w", "rw", "r"):
        raise UsageError("--access must be w, rw or r, not %r" % access)
    if not rest:
        raise UsageError(
            "usage: hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]")
    return WatchArgs(" ".join(rest), location, access, changed, condition)


def parse_number(line, what="N"):
    try:
        return int(line.strip(), 0)
    except ValueError:
        raise UsageError("%s must be a watch number (see the list of hw-watches)" % what) from None


def perf_trap(si_signo, si_code, perf_data, perf_type):
    """The reservation id of a perf breakpoint's SIGTRAP, or None."""
    if si_signo != SIGTRAP or si_code != TRAP_PERF or perf_type != PERF_TYPE_BREAKPOINT:
        return None
    return perf_data


class Watch:
    """One hw-watch: a region of the inferior and a reservation per thread."""

    def __init__(self, number, args, address, length, type_name=""):
        self.number = number
        self.args = args
        self.address = address
        self.length = length
        self.type_name = type_name
        # tid -> reservation id
        self.reservations = {}
        # reservation id -> traps seen for it (reported, or filtered by
        # --changed/--if here), to compare with the kernel's count.
        self.seen = {}
        self.last_raw = None
        self.last_text = "?"
        self.hits = 0  # hits reported as stops

    @property
    def what(self):
        return ("-location " if self.args.location else "") + self.args.expr

    @property
    def kind(self):
        # As GDB names its own.
        return {"w": "Hardware watchpoint", "r": "Hardware read watchpoint",
                "rw": "Hardware access (read/write) watchpoint"}[self.args.access]


class Book:
    """The watches of one debugger session, and its connection to hwwatchd
    (opened at the first use; the connection is the daemon's session, so a
    debugger that dies releases everything)."""

    def __init__(self, socket_path=None, label="debugger"):
        self.socket_path = socket_path
        self.label = label
        self.client = None
        self.watches = {}
        self.by_reservation = {}  # reservation id -> (Watch, tid)
        self.next_number = 1

    def connect(self):
        if self.client is None:
            self.client = Client.connect(self.socket_path)
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def new_watch(self, args, address, length, type_name=""):
        w = Watch(self.next_number, args, address, length, type_name)
        return w

    def _reserve(self, w, tid):
        c = self.connect()
        r = c.reserve(
            target(tid=tid),
            watch(w.address, w.length, w.args.access, symbol=w.args.expr),
            delivery="stop",
            label="%s hw-watch %d" % (self.label, w.number),
        )
        w.reservations[tid] = r.id
        w.seen[r.id] = 0
        self.by_reservation[r.id] = (w, tid)
        return r

    def add(self, w, tids):
        """Reserves `w` on every thread in `tids`; all or nothing: on a
        refusal what was reserved is released and the Error is raised."""
        try:
            for tid in tids:
                self._reserve(w, tid)
        except Error:
            self._release_watch(w)
            raise
        self.watches[w.number] = w
        self.next_number += 1
        return w

    def arm_thread(self, tid):
        """Arms every watch on a new thread; returns [(Watch, Error)] refused."""
        failed = []
        for w in self.watches.values():
            if tid in w.reservations:
                continue
            try:
                self._reserve(w, tid)
            except Error as e:
                failed.append((w, e))
        return failed

    def _release_watch(self, w):
        for tid, rid in list(w.reservations.items()):
            self.by_reservation.pop(rid, None)
            try:
                if self.client is not None:
                    self.client.release(rid)
            except Error:
                pass  # the thread ended: the daemon released it already
        w.reservations.clear()

    def remove(self, number):
        w = self.watches.pop(number, None)
        if w is None:
            raise UsageError("no hw-watch number %d" % number)
        self._release_watch(w)
        return w

    def release_all(self):
        """Releases every reservation and forgets every watch; returns how
        many watches there were."""
        n = len(self.watches)
        for w in list(self.watches.values()):
            self._release_watch(w)
        self.watches.clear()
        return n

    def lookup(self, reservation_id):
        return self.by_reservation.get(reservation_id)

    def kernel_hits(self):
        """reservation id -> the kernel's hit count, for our reservations."""
        if not self.by_reservation or self.client is None:
            return {}
        return {r.id: r.hits for r in self.client.list() if r.id in self.by_reservation}

    def unseen(self, tids=None):
        """[(Watch, tid, n)]: hits the kernel counted on our reservations (of
        `tids`, or all) that no trap of ours accounted for, e.g. because the
        debugger took the SIGTRAP for its own single step. Marks them seen."""
        out = []
        counts = self.kernel_hits()
        for rid, hits in counts.items():
            w, tid = self.by_reservation[rid]
            if tids is not None and tid not in tids:
                continue
            missed = hits - w.seen.get(rid, 0)
            if missed > 0:
                w.seen[rid] = hits
                out.append((w, tid, missed))
        return out


def refusal_text(err):
    """The daemon's explanation of a refused reservation, in one paragraph."""
    text = "hwwatchd refused: %s" % err
    r = err.refusal
    if r is not None:
        extra = []
        if r.weight:
            extra.append("the watch needs %d register(s)" % r.weight)
        if r.slots:
            extra.append("%d slot(s) in the pool" % r.slots)
        if r.reason == pb.Refusal.HELD_OUTSIDE:
            extra.append("the debugger's own watchpoints and breakpoints (watch, hbreak) "
                         "count there too")
        if extra:
            text += " (" + "; ".join(extra) + ")"
    return text


def slots_text(client, tids=()):
    """hw-slots: the daemon's view of the registers, per CPU and for the
    inferior's threads."""
    s = client.slots()
    lines = []
    free = {}
    for cs in s.cpus:
        free.setdefault((cs.slot_type, cs.slots, cs.cpu_pinned, cs.max_task_pinned, cs.free),
                        []).append(cs.cpu)
    lines.append("pool  slots  cpu-targets  busiest-task  free  cpus")
    for (stype, slots, cpu_pinned, max_task, nfree), cpus in sorted(free.items()):
        lines.append("%-5s %5d  %11d  %12d  %4d  %s" % (
            "inst" if stype == pb.SLOT_TYPE_INST else "data", slots, cpu_pinned, max_task,
            nfree, _ranges(cpus)))
    held = {t.tid: t for t in s.tasks}
    for tid in tids:
        t = held.get(tid)
        lines.append("thread %d: %d slot(s) held through hwwatchd" % (
            tid, t.all_cpus if t is not None else 0))
    others = [t for t in s.tasks if t.tid not in tids]
    if others:
        lines.append("other tasks holding slots through hwwatchd: %s" % ", ".join(
            "%d (%d)" % (t.tid, t.all_cpus) for t in others))
    lines.append("(registers a debugger or perf took directly are not counted here: "
                 "the kernel refuses them at hw-watch time)")
    return "\n".join(lines)


def _ranges(nums):
    nums = sorted(nums)
    out, start, prev = [], None, None
    for n in nums:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append(str(start) if start == prev else "%d-%d" % (start, prev))
            start = prev = n
    if start is not None:
        out.append(str(start) if start == prev else "%d-%d" % (start, prev))
    return ",".join(out)


def watches_table(watches, kernel_hits):
    """info hw-watches / hw-watches."""
    if not watches:
        return "No hw-watches."
    lines = ["Num  Type             Access      Address             Len  Hits  Kernel  Threads  What"]
    for w in sorted(watches, key=lambda w: w.number):
        k = sum(kernel_hits.get(rid, 0) for rid in w.reservations.values())
        kind = {"w": "hw watchpoint", "r": "read watchpoint", "rw": "acc watchpoint"}[w.args.access]
        lines.append("%-4d %-16s %-11s %#-18x %4d  %4d  %6d  %7d  %s" % (
            w.number, kind, HIT_ACCESS_WORDS[w.args.access], w.address, w.length, w.hits, k,
            len(w.reservations), w.what))
        if w.args.changed:
            lines.append("        only when the value changes")
        if w.args.condition:
            lines.append("        stop only if %s" % w.args.condition)
        lines.append("        hwwatchd reservations: %s" % ", ".join(
            "%d (thread %d)" % (rid, tid) for tid, rid in sorted(w.reservations.items())))
    return "\n".join(lines)


__all__ = [
    "Book", "UsageError", "Watch", "WatchArgs", "access_name", "parse_number",
    "parse_watch_args", "perf_trap", "refusal_text", "slots_text", "watches_table",
]
