# hwwatch_lldb.py: LLDB commands that take their hardware watchpoints from
# hwwatchd. Load it with `command script import /usr/share/hwwatch/hwwatch_lldb.py`.
#
#   hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]
#   hw-unwatch N
#   hw-watches
#   hw-slots
#
# As in hwwatch-gdb.py, each hw-watch is one stop-delivery reservation per
# thread. A hit is a SIGTRAP with si_code TRAP_PERF and the reservation id
# in si_perf_data: LLDB 16 (NativeProcessLinux.cpp) stops for it as "signal
# SIGTRAP" and does not pass it on (LinuxSignals.cpp: suppress). A scripted
# stop hook reads the raw siginfo (SBThread.GetSiginfo(): si_code at byte 8,
# si_perf_data at 24, si_perf_type at 32 on amd64), reports hits of this
# session's reservations and lets the process go on by itself when --changed
# or --if filter the hit out. New threads are armed at a breakpoint on
# glibc's start_thread, before they run any of the program's code.
#
# Releases: hw-unwatch, the process's exit, and the daemon when LLDB ends
# (the connection is the session). LLDB has no hook before `detach`: use
# `hw-unwatch all` before detaching from a program that must live on.

import os
import sys

import lldb


def _import_hwwatch():
    try:
        import hwwatch.debugger  # noqa: F401
        return
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.path.dirname(os.path.dirname(here))
    for d in (here, os.path.join(prefix, "lib", "python3", "dist-packages"),
              os.path.join(prefix, "lib", "python%d.%d" % sys.version_info[:2], "dist-packages")):
        if os.path.isfile(os.path.join(d, "hwwatch", "__init__.py")) and d not in sys.path:
            sys.path.append(d)
    import hwwatch.debugger  # noqa: F401


_import_hwwatch()

from hwwatch import debugger as _dbg  # noqa: E402
from hwwatch.client import Error as _HwError  # noqa: E402


class _Session:
    def __init__(self):
        self.book = _dbg.Book(label="lldb %d" % os.getpid())
        self.hook_targets = set()
        self.thread_bp = None
        self.pid = None

    def read(self, target, w):
        err = lldb.SBError()
        raw = target.GetProcess().ReadMemory(w.address, w.length, err)
        if not err.Success():
            return None, "<unreadable: %s>" % err.GetCString()
        v = target.CreateValueFromAddress(w.args.expr, lldb.SBAddress(w.address, target), w.type)
        text = v.GetValue() or v.GetSummary() or ("0x" + raw[::-1].hex())
        return raw, text


_session = _Session()


def _tids(process):
    return [t.GetThreadID() for t in process.threads]


def _fail(result, msg):
    result.SetError(msg)


def hw_watch(debugger, command, exe_ctx, result, internal_dict):
    """hw-watch [-l] EXPR [--access w|rw|r] [--changed] [--if COND]: watch memory
    with hardware registers hwwatchd hands out (every thread, later ones too)."""
    try:
        args = _dbg.parse_watch_args(command)
    except _dbg.UsageError as e:
        return _fail(result, str(e))
    target = exe_ctx.target
    process = exe_ctx.process
    if not process or not process.IsValid() or process.GetState() != lldb.eStateStopped:
        return _fail(result, "hw-watch: the process must exist and be stopped")
    frame = exe_ctx.frame
    v = frame.GetValueForVariablePath(args.expr) if frame else None
    if v is None or not v.IsValid() or v.GetError().Fail():
        v = frame.EvaluateExpression(args.expr) if frame else target.EvaluateExpression(args.expr)
    if not v.IsValid() or v.GetError().Fail():
        return _fail(result, "hw-watch: cannot evaluate '%s': %s" % (args.expr, v.GetError()))
    address = v.GetLoadAddress()
    if address == lldb.LLDB_INVALID_ADDRESS:
        return _fail(result, "hw-watch: '%s' has no address" % args.expr)
    length = v.GetByteSize()
    if _session.book.watches and _session.pid != process.GetProcessID():
        return _fail(result, "hw-watch: watches of process %d exist" % _session.pid)
    w = _session.book.new_watch(args, address, length, v.GetType().GetName())
    w.type = v.GetType()
    try:
        _session.book.add(w, _tids(process))
    except _HwError as e:
        return _fail(result, "hw-watch: %s" % e if e.unreachable else _dbg.refusal_text(e))
    _session.pid = process.GetProcessID()
    w.last_raw, w.last_text = _session.read(target, w)
    _install(debugger, target)
    result.AppendMessage("hw-watch %d: %s (hwwatchd: %#x+%d on %d thread(s), reservation(s) %s)"
                         % (w.number, w.what, address, length, len(w.reservations),
                            ", ".join(str(r) for r in sorted(w.reservations.values()))))


def _install(debugger, target):
    key = target.GetProcess().GetUniqueID()
    if key in _session.hook_targets:
        return
    _session.hook_targets.add(key)
    debugger.HandleCommand("target stop-hook add -P hwwatch_lldb.StopHook")
    # Each new thread runs glibc's start_thread first: arm it there.
    bp = target.BreakpointCreateByName("start_thread")
    bp.SetScriptCallbackFunction("hwwatch_lldb.new_thread_callback")
    bp.SetAutoContinue(True)
    _session.thread_bp = bp


def new_thread_callback(frame, bp_loc, extra_args, internal_dict):
    thread = frame.GetThread()
    for w, e in _session.book.arm_thread(thread.GetThreadID()):
        print("hw-watch %d: thread %d is NOT watched: %s"
              % (w.number, thread.GetThreadID(), _dbg.refusal_text(e)))
    return False


def hw_unwatch(debugger, command, exe_ctx, result, internal_dict):
    """hw-unwatch N|all: delete hw-watches and give their registers back."""
    if command.strip() == "all":
        n = _session.book.release_all()
        result.AppendMessage("hw-watch: %d watch(es) released" % n)
        return
    try:
        w = _session.book.remove(_dbg.parse_number(command))
    except _dbg.UsageError as e:
        return _fail(result, str(e))
    result.AppendMessage("hw-watch %d deleted (%s)" % (w.number, w.what))


def hw_watches(debugger, command, exe_ctx, result, internal_dict):
    """hw-watches: the hw-watches, their hits and hwwatchd reservations."""
    try:
        counts = _session.book.kernel_hits()
    except _HwError:
        counts = {}
    result.AppendMessage(_dbg.watches_table(_session.book.watches.values(), counts))


def hw_slots(debugger, command, exe_ctx, result, internal_dict):
    """hw-slots: who holds the hardware debug registers, as hwwatchd accounts them."""
    try:
        client = _session.book.connect()
        process = exe_ctx.process
        tids = _tids(process) if process and process.IsValid() else []
        result.AppendMessage(_dbg.slots_text(client, tids))
    except _HwError as e:
        _fail(result, "hw-slots: %s" % e)


class StopHook:
    """Recognizes this session's TRAP_PERF stops and reports them; returns
    False (go on) when every stopped thread's reason is a hit filtered out."""

    def __init__(self, target, extra_args, internal_dict):
        self.target = target

    def handle_stop(self, exe_ctx, stream):
        process = exe_ctx.process
        if not process or not process.IsValid():
            return True
        if process.GetState() == lldb.eStateExited:
            n = _session.book.release_all()
            if n:
                stream.Print("hw-watch: %d watch(es) released (the program exited)\n" % n)
            return True
        stop = False
        ours = False
        for thread in process.threads:
            reason = thread.GetStopReason()
            if reason in (lldb.eStopReasonNone, lldb.eStopReasonInvalid):
                continue
            if reason == lldb.eStopReasonSignal and thread.GetStopReasonDataAtIndex(0) == 5:
                verdict = self.trap(thread, stream)
                if verdict is not None:
                    ours = True
                    stop = stop or verdict
                    continue
            stop = True
        if not ours and _session.book.watches:
            self.missed(exe_ctx.thread, stream)
        return stop or not ours

    def trap(self, thread, stream):
        """None: not ours; True: report and stop; False: filtered out."""
        si = thread.GetSiginfo()
        data = si.GetData()
        err = lldb.SBError()
        code = data.GetSignedInt32(err, 8)
        perf_data = data.GetUnsignedInt64(err, 24)
        perf_type = data.GetUnsignedInt32(err, 32)
        if not err.Success():
            return None
        rid = _dbg.perf_trap(5, code, perf_data, perf_type)
        found = _session.book.lookup(rid) if rid is not None else None
        if found is None:
            return None
        w, tid = found
        w.seen[rid] = w.seen.get(rid, 0) + 1
        raw, text = _session.read(self.target, w)
        old_raw, old_text = w.last_raw, w.last_text
        if w.args.changed and raw == old_raw:
            return False
        w.last_raw, w.last_text = raw, text
        if w.args.condition:
            v = thread.GetFrameAtIndex(0).EvaluateExpression(w.args.condition)
            if v.GetError().Success() and v.GetValueAsUnsigned() == 0:
                return False
        w.hits += 1
        stream.Print("hw-watch %d hit: %s (thread %d)\n" % (w.number, w.what, tid))
        if w.args.access == "w" or raw != old_raw:
            stream.Print("old value: %s\nnew value: %s\n" % (old_text, text))
        else:
            stream.Print("value: %s\n" % text)
        return True

    def missed(self, thread, stream):
        if not thread or not thread.IsValid():
            return
        try:
            missed = _session.book.unseen(tids={thread.GetThreadID()})
        except _HwError as e:
            stream.Print("hw-watch: cannot ask hwwatchd for hit counts: %s\n" % e)
            return
        for w, tid, n in missed:
            raw, text = _session.read(self.target, w)
            stream.Print("hw-watch %d: %d hit(s) of %s in thread %d not reported as a stop: "
                         "LLDB took the trap for its own step (the kernel counted them)\n"
                         % (w.number, n, w.what, tid))
            stream.Print("old value: %s\nnew value: %s\n" % (w.last_text, text))
            w.last_raw, w.last_text = raw, text
            w.hits += n


def __lldb_init_module(debugger, internal_dict):
    for name, fn in (("hw-watch", "hw_watch"), ("hw-unwatch", "hw_unwatch"),
                     ("hw-watches", "hw_watches"), ("hw-slots", "hw_slots")):
        debugger.HandleCommand("command script add -o -f hwwatch_lldb.%s %s" % (fn, name))
