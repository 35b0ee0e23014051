// The tracer: one thread that owns every ptrace call of the daemon.
//
// It traces a thread when a reservation needs it: the ptrace backend (the
// daemon writes the debug registers itself, in a slot it or the client
// chooses), or a perf stop delivery on a thread nobody else traces (the
// daemon takes the SIGTRAP instead of letting it kill the target). Traced
// threads run freely: the tracer attaches with PTRACE_SEIZE, stops a thread
// with PTRACE_INTERRUPT only to program it, delivers the target's own
// signals unchanged, lets job-control stops stay stopped (PTRACE_LISTEN),
// and answers its own SIGTRAPs with a hit and a silent continue.
//
// Threads a traced process starts are attached by the kernel (clone
// option) and armed with the process's ptrace watches before they run. An
// exec flushes the registers; the tracer reports it and lets go.
//
// A perf stop's events live in the tracer thread's private file table
// (unshare(CLONE_FILES)): a thread's files close before it detaches its
// tracees when it exits, so a SIGKILLed daemon stops raising SIGTRAPs
// before its threads run untraced, which would kill them.
//
// Registers written through ptrace outlive the tracer: every detach clears
// them first, and a journal (one file per armed thread under the runtime
// directory) lets the next daemon clear what a crashed one left behind.
//
// Never calls into its users while they may wait on it: callbacks run on
// the tracer thread and must not block on the callers of Arm/Hold/....
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/arch.h"
#include "arch/perf_event.h"
#include "arch/ptrace_debugreg.h"
#include "arch/result.h"
#include "arch/scoped_fd.h"
#include "daemon/thread_annotations.h"
#include "daemon/types.h"
#include "daemon/wait_status.h"

namespace hwwatch::daemon {

// What a traced thread does for one reservation group.
struct TraceUse {
  uint64_t group = 0;
  // A perf stop: the tracer opens one sigtrap perf event per spec (SIGTRAP
  // with si_perf_data = group) in its own file table, so that they close
  // before it lets go of the thread, even when the daemon is killed.
  // Else the ptrace backend: the tracer writes the debug registers.
  bool perf_stop = false;
  // One spec per register.
  std::vector<arch::BreakpointSpec> specs;
  // ptrace backend: the debug register index for each spec.
  std::vector<unsigned> slots;
  // Bytes read from the target at each hit (Hit.value), 0: none.
  uint64_t capture_address = 0;
  uint32_t capture_length = 0;
};

// A hit seen by the tracer, the target stopped right after it.
using TraceHit = RawHit;

class Tracer {
 public:
  struct Sink {
    std::function<void(const TraceHit&)> hit;
    // A traced thread ended (its groups lose it); status as waitpid says.
    std::function<void(uint64_t group, pid_t tid, int status)> exited;
    // The process exec'd: the group's watches there are gone.
    std::function<void(uint64_t group, pid_t tgid)> execed;
  };

  // `journal_dir`: where armed registers are recorded ("" for none); what a
  // previous daemon left there is cleared before the tracer serves.
  // `keep_fds`: descriptors of this process the tracer thread uses besides
  // its own (its file table is private, see above; everything else is
  // closed there).
  Tracer(std::string journal_dir, Sink sink, std::vector<int> keep_fds = {});
  // Clears every register it armed and detaches from everything.
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // Traces `tid` (if not yet) and adds `use`: the ptrace backend programs
  // its specs (returns the slots used, in order); a perf stop returns none.
  // Idempotent per (tid, group): a second call returns the slots in use
  // (those it armed when the thread started, for a followed process).
  // Errors: EPERM when another tracer has it, ESRCH when it is gone,
  // EBUSY when a slot is armed already, ENOSPC/EINVAL from the kernel.
  arch::Result<std::vector<unsigned>> Add(pid_t tid, const TraceUse& use);
  // Add for many threads in one pass of the tracer thread (a process-wide
  // watch): every thread is seized and interrupted before the first one is
  // waited for, so they stop together instead of one after another, and
  // their journal lines go in one write. One result per (tid, use).
  std::vector<arch::Result<std::vector<unsigned>>> AddAll(
      const std::vector<std::pair<pid_t, TraceUse>>& adds);
  // Replaces the group's use of `tid` in one stop: the old registers are
  // cleared and the new ones armed, or (on failure) the old ones rearmed.
  arch::Status Replace(pid_t tid, const TraceUse& use);
  // Removes the group's use of `tid` (clearing its registers); detaches
  // when nothing is left.
  void Remove(pid_t tid, uint64_t group);
  // Remove for many threads in one pass, stopping them together.
  void RemoveAll(const std::vector<pid_t>& tids, uint64_t group);
  // New threads of `tgid` get `use` (armed before they first run).
  void Follow(pid_t tgid, const TraceUse& use);
  void Unfollow(pid_t tgid, uint64_t group);
  // True when this daemon traces `tid`.
  bool Traces(pid_t tid);

  // How many threads the last start found registers left on, and cleared.
  unsigned leftovers_cleared() const { return leftovers_cleared_; }

 private:
  struct Tracee;
  // Runs `fn` on the tracer thread and waits for it.
  void Run(std::function<void()> fn) EXCLUDES(mu_);
  void Loop() EXCLUDES(mu_);
  void Wake();
  // Stops `t` (PTRACE_INTERRUPT), runs fn in that stop, resumes it;
  // false when the thread is gone.
  bool InStop(Tracee& t, const std::function<void()>& fn);
  // InStop for several threads: every interrupt is asked before the first
  // wait. fn(i) runs in the stop of tids[i]; returns which stopped.
  std::vector<bool> InStops(const std::vector<pid_t>& tids, const std::function<void(size_t)>& fn);
  // The rest of InStop once the interrupt is asked.
  bool FinishStop(pid_t tid, const std::function<void()>& fn);
  void HandleStop(pid_t tid, WaitStatus status);
  // Takes the pending state changes of tracees; false when a child that is
  // not ours is in the way (a test forks in this process): then
  // SweepAll() looks at each tracee, as it also does once a second.
  bool SweepPending();
  void SweepAll();
  // waitpid(tid) until it reports a change or `deadline` passes (0).
  pid_t WaitFor(pid_t tid, WaitStatus* status, std::chrono::steady_clock::time_point deadline);
  // With `step`: PTRACE_SINGLESTEP (an arm64 perf stop), else PTRACE_CONT.
  void Resume(Tracee& t, WaitStatus status, int deliver, bool step = false);
  arch::Result<std::vector<unsigned>> ArmUse(Tracee& t, const TraceUse& use);
  arch::Result<std::vector<arch::PerfBreakpoint>> OpenPerfStop(pid_t tid, const TraceUse& use);
  void DisarmUse(Tracee& t, const TraceUse& use);
  void ThreadGone(pid_t tid, WaitStatus status);
  void Exec(pid_t tid);
  // Clears everything and detaches `t` (in a stop of our own; `interrupted`:
  // its PTRACE_INTERRUPT is asked already).
  void Release(Tracee& t, bool interrupted = false);
  // Release for several threads, their interrupts asked together first.
  void ReleaseAll(const std::vector<pid_t>& tids);
  // A journal line of `t`'s armed registers, and those `adding` is about to
  // arm.
  void Journal(const Tracee& t, const TraceUse* adding = nullptr);
  void JournalNone(pid_t tid);
  void JournalLine(const std::string& line);
  // Writes the lines waiting (one write), and (`compact`) rewrites the
  // journal with what is armed when it is mostly history.
  void FlushJournal(bool compact = true);
  // While one lives, journal lines wait and are written together when the
  // last one ends (a pass over many threads).
  class JournalBatch {
   public:
    explicit JournalBatch(Tracer& t) : t_(t) { ++t_.journal_batches_; }
    ~JournalBatch() {
      if (--t_.journal_batches_ == 0) t_.FlushJournal();
    }
    JournalBatch(const JournalBatch&) = delete;
    JournalBatch& operator=(const JournalBatch&) = delete;

   private:
    Tracer& t_;
  };
  std::string JournalPath() const;
  void ClearLeftovers();
  Tracee* Find(pid_t tid);
  // `tgid_guess`: its process, if known (checked).
  Tracee* Attach(pid_t tid, bool seize, pid_t tgid_guess = 0);

  const std::string journal_dir_;
  const Sink sink_;
  const std::vector<int> keep_fds_;
  // Written by the tracer thread before the constructor returns (which
  // waits for it), read-only after.
  unsigned leftovers_cleared_ = 0;

  // Tracer thread only (no lock: every other thread reaches them through
  // Run()). So is everything below without GUARDED_BY, except wake_fd_
  // (set before the thread starts) and thread_ (set once by the
  // constructor, read by Run()).
  std::map<pid_t, std::unique_ptr<Tracee>> tracees_;
  std::map<pid_t, std::vector<TraceUse>> follows_;  // by tgid

  // The hand-off from callers to the tracer thread. A leaf lock: nothing
  // is called while it is held.
  Mutex mu_;
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  // eventfd: work queued. In both file tables (see the constructor).
  arch::ScopedFd wake_fd_;
  // Descriptors of the tracer thread's private file table: owned by its
  // thread function and closed there, never by ~Tracer (their numbers mean
  // something else, or nothing, in the process's table).
  struct ThreadFiles {
    arch::ScopedFd signal;   // signalfd for SIGCHLD: a tracee changed state
    arch::ScopedFd journal;  // JournalPath(), open for appending
  };
  ThreadFiles* files_ = nullptr;                           // tracer thread only, while it runs
  pid_t self_ = 0;                                         // the tracer thread's tid
  size_t journal_lines_ = 0;                               // tracer thread
  unsigned journal_batches_ = 0;                           // tracer thread
  std::string journal_pending_;                            // tracer thread
  std::chrono::steady_clock::time_point last_full_sweep_;  // tracer thread
  std::thread thread_;
};

}  // namespace hwwatch::daemon
