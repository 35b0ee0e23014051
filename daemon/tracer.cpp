#include "daemon/tracer.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "arch/perf_event.h"
#include "daemon/procfs.h"
#include "daemon/wait_status.h"

#ifndef TRAP_HWBKPT
#define TRAP_HWBKPT 4
#endif

namespace hwwatch::daemon {

namespace {

using arch::ErrnoError;
using arch::Error;

constexpr long kOptions = PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXEC;
// How long a thread may take to reach the stop PTRACE_INTERRUPT asks for.
constexpr std::chrono::milliseconds kStopTimeout{2000};
// arm64: times a detach lets a pending step over a hit run before it gives up.
constexpr int kMaxStepTries = 3;
// How long such a step is given before the thread is stopped again (times
// the try: 5, 10, 15 ms).
constexpr std::chrono::milliseconds kStepWait{5};
// Times a detach lets a queued trap of ours come to be swallowed.
constexpr int kMaxQueuedTraps = 4;
// Poll period for tracee state changes when SIGCHLD may not reach us (a
// process that does not block SIGCHLD everywhere, such as a test).
constexpr int kPollMs = 50;

// The stopped tracee's instruction pointer, 0 when it cannot be read.
uint64_t ReadIp(pid_t tid) {
  auto ip = arch::ReadInstructionPointer(tid);
  return ip.ok() ? *ip : 0;
}

// The SIGTRAPs queued for the stopped thread (its own queue, where the
// kernel puts a trap's signal), without taking them.
std::vector<siginfo_t> QueuedTraps(pid_t tid) {
  __ptrace_peeksiginfo_args args{0, 0, 8};
  siginfo_t queued[8];
  const long n = ptrace(PTRACE_PEEKSIGINFO, tid, &args, queued);
  std::vector<siginfo_t> out;
  for (long i = 0; i < n; ++i) {
    if (queued[i].si_signo == SIGTRAP) out.push_back(queued[i]);
  }
  return out;
}

}  // namespace

struct Tracer::Tracee {
  explicit Tracee(pid_t t) : tid(t), regs(t) {}
  pid_t tid;
  pid_t tgid = 0;
  uint64_t start_time = 0;
  // Attached by the kernel at clone and not yet stopped once: the
  // process's follows are armed at its first stop, before it runs.
  bool fresh = false;
  // Traced only to clear registers a previous daemon left: its hardware
  // traps are swallowed.
  bool leftover = false;
  arch::PtraceDebugRegs regs;
  // arm64: resumed from a perf stop at this instruction with the kernel's
  // step over it pending (0: none). Until the thread has left it, every
  // resume must step, and a detach must let the step run first: a step
  // cancelled by PTRACE_CONT or PTRACE_DETACH leaves the thread's
  // watchpoints off for good (the kernel turns them back on only when the
  // step completes).
  uint64_t step_ip = 0;
  // Reservations taken off this thread while it stays traced (most recent
  // last, a few): a trap of theirs already queued is still ours to swallow.
  std::vector<uint64_t> retired;
  struct Held {
    TraceUse use;
    std::vector<unsigned> slots;
    // A perf stop's events (in the tracer thread's file table).
    std::vector<arch::PerfBreakpoint> events;
  };
  std::vector<Held> uses;

  // A SIGTRAP our registers or events raised, for a watch held now or
  // taken off since: a TRAP_HWBKPT always (only its tracer, us, writes a
  // thread's debug registers), a perf trap by its reservation's group (the
  // target's own perf events may raise theirs). Never the target's to see.
  bool OwnsTrap(const siginfo_t& si) const {
    if (si.si_signo != SIGTRAP) return false;
    if (si.si_code == TRAP_HWBKPT) return true;
    if (si.si_code != arch::kTrapPerf) return false;
    const uint64_t group = arch::PerfSigData(si);
    return std::any_of(uses.begin(), uses.end(),
                       [&](const Held& h) { return h.use.perf_stop && h.use.group == group; }) ||
           std::find(retired.begin(), retired.end(), group) != retired.end();
  }
  void Retire(uint64_t group) {
    if (retired.size() >= 16) retired.erase(retired.begin());
    retired.push_back(group);
  }
};

Tracer::Tracer(std::string journal_dir, Sink sink, std::vector<int> keep_fds)
    : journal_dir_(std::move(journal_dir)), sink_(std::move(sink)), keep_fds_(std::move(keep_fds)) {
  // Created before the thread unshares its file table, so it is in both:
  // ~Tracer closes this table's copy (wake_fd_'s destructor), the tracer
  // thread's copy closes with its table when the thread exits.
  wake_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::promise<void> ready;
  thread_ = std::thread([this, &ready] {
    // The signalfd and the journal are opened below, after unshare(): they
    // exist only in this thread's file table, where their numbers may name
    // something else in the process's table. So this thread owns and
    // closes them (files goes out of scope before the thread returns);
    // ~Tracer, on another thread, must not.
    ThreadFiles files;
    files_ = &files;
    // SIGCHLD to a signalfd: blocked here (the daemon blocks it in every
    // thread; elsewhere the poll period covers a signal taken by another).
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // A file table of its own: the perf stop events opened here close when
    // this thread exits, before its tracees are let go (see tracer.h).
    if (unshare(CLONE_FILES) != 0) {
      spdlog::error(
          "tracer: unshare(CLONE_FILES): {}; a killed daemon may kill the threads it "
          "takes stops for",
          std::strerror(errno));
    } else {
      // Only what it uses: a copy of another fd here would keep that file
      // open after its owner closes it (gRPC's epoll would then report a
      // closed socket's events under a reused number).
      std::vector<int> keep = keep_fds_;
      keep.insert(keep.end(), {0, 1, 2, wake_fd_.get()});
      std::sort(keep.begin(), keep.end());
      unsigned from = 0;
      for (int fd : keep) {
        if (static_cast<unsigned>(fd) > from) {
          syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0);
        }
        from = std::max(from, static_cast<unsigned>(fd) + 1);
      }
      syscall(SYS_close_range, from, ~0U, 0);
    }
    files.signal.reset(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    self_ = static_cast<pid_t>(syscall(SYS_gettid));
    ClearLeftovers();
    ready.set_value();
    Loop();
    // ~Tracer released every tracee before it stopped the loop: nothing
    // for the next start to do.
    if (files.journal) {
      files.journal.reset();
      unlink(JournalPath().c_str());
    }
    files_ = nullptr;
  });
  ready.get_future().wait();
}

Tracer::~Tracer() {
  Run([this] {
    while (!tracees_.empty()) Release(*tracees_.begin()->second);
    follows_.clear();
  });
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  Wake();
  // The thread closes its signalfd and journal (and removes the journal)
  // before it returns; wake_fd_ closes with this object.
  thread_.join();
}

void Tracer::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_.get(), &one, sizeof one);
}

void Tracer::Run(std::function<void()> fn) {
  if (std::this_thread::get_id() == thread_.get_id()) {
    fn();
    return;
  }
  std::promise<void> done;
  {
    MutexLock lock(mu_);
    queue_.push_back([&] {
      fn();
      done.set_value();
    });
  }
  Wake();
  done.get_future().wait();
}

void Tracer::Loop() {
  for (;;) {
    const int signal_fd = files_->signal.get();
    pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {signal_fd, POLLIN, 0}};
    (void)poll(fds, 2, tracees_.empty() ? -1 : kPollMs);
    uint64_t n;
    (void)!read(wake_fd_.get(), &n, sizeof n);
    signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof si) == sizeof si) {
    }
    std::deque<std::function<void()>> work;
    bool stop;
    {
      MutexLock lock(mu_);
      work.swap(queue_);
      stop = stop_;
    }
    for (auto& fn : work) fn();
    if (stop) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_full_sweep_ >= std::chrono::seconds(1) || !SweepPending()) {
      last_full_sweep_ = now;
      SweepAll();
    }
  }
}

bool Tracer::SweepPending() {
  // Which child has news, without taking it (WNOWAIT); then take it.
  for (int i = 0; i < 100000; ++i) {
    siginfo_t si{};
    if (waitid(P_ALL, 0, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT | __WALL) != 0) return true;
    if (si.si_pid == 0) return true;  // nothing pending
    const pid_t pid = si.si_pid;
    const auto creds = Find(pid) == nullptr ? procfs::ReadProcCreds(pid) : std::nullopt;
    if (Find(pid) == nullptr && (!creds || creds->tracer_pid != self_)) {
      return false;  // a child of someone else in this process: look at ours one by one
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG | __WALL) == pid) HandleStop(pid, WaitStatus(status));
  }
  return false;
}

void Tracer::SweepAll() {
  // Every state change of every tracee; threads found on the way (clone
  // events) are looked at in the next round.
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<pid_t> tids;
    for (const auto& [tid, t] : tracees_) tids.push_back(tid);
    for (pid_t tid : tids) {
      int status = 0;
      const pid_t r = waitpid(tid, &status, WNOHANG | __WALL);
      if (r == tid) {
        HandleStop(tid, WaitStatus(status));
        changed = true;
      } else if (r < 0 && errno == ECHILD) {
        ThreadGone(tid, WaitStatus());  // no longer ours (reaped elsewhere)
      }
    }
  }
}

Tracer::Tracee* Tracer::Find(pid_t tid) {
  auto it = tracees_.find(tid);
  return it == tracees_.end() ? nullptr : it->second.get();
}

Tracer::Tracee* Tracer::Attach(pid_t tid, bool seize, pid_t tgid_guess) {
  auto t = std::make_unique<Tracee>(tid);
  t->tgid = procfs::TgidOf(tid, tgid_guess).value_or(tid);
  t->start_time = procfs::StartTime(tid, t->tgid).value_or(0);
  if (seize && ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(kOptions)) != 0) {
    return nullptr;
  }
  t->fresh = !seize;
  Tracee* raw = t.get();
  tracees_[tid] = std::move(t);
  return raw;
}

pid_t Tracer::WaitFor(pid_t tid, WaitStatus* status,
                      std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    int raw = 0;
    const pid_t r = waitpid(tid, &raw, WNOHANG | __WALL);
    if (r > 0) *status = WaitStatus(raw);
    if (r != 0) return r;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    // Woken by SIGCHLD (a tracee changed state); a few ms at most where
    // SIGCHLD may go to another thread. Loop() looks at every tracee after
    // the work that called this, so no other tracee's change is lost.
    const int signal_fd = files_->signal.get();
    pollfd fd{signal_fd, POLLIN, 0};
    (void)poll(&fd, 1, static_cast<int>(std::min<int64_t>(left.count() + 1, 5)));
    signalfd_siginfo si;
    while (read(signal_fd, &si, sizeof si) == sizeof si) {
    }
  }
}

bool Tracer::InStop(Tracee& t, const std::function<void()>& fn) {
  const pid_t tid = t.tid;
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
    ThreadGone(tid, WaitStatus());
    return false;
  }
  return FinishStop(tid, fn);
}

std::vector<bool> Tracer::InStops(const std::vector<pid_t>& tids,
                                  const std::function<void(size_t)>& fn) {
  // Every interrupt first: the threads stop together, and the waits below
  // mostly find their stop there already.
  std::vector<bool> asked(tids.size(), false), stopped(tids.size(), false);
  for (size_t i = 0; i < tids.size(); ++i) {
    asked[i] = ptrace(PTRACE_INTERRUPT, tids[i], nullptr, nullptr) == 0;
    if (!asked[i]) ThreadGone(tids[i], WaitStatus());
  }
  for (size_t i = 0; i < tids.size(); ++i) {
    if (asked[i]) stopped[i] = FinishStop(tids[i], [&] { fn(i); });
  }
  return stopped;
}

bool Tracer::FinishStop(pid_t tid, const std::function<void()>& fn) {
  const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  WaitStatus status;
  const pid_t r = WaitFor(tid, &status, deadline);
  if (r == 0) {
    spdlog::warn("thread {} did not stop within {} ms", tid, kStopTimeout.count());
    return false;  // the interrupt stays pending; Loop() resumes it later
  }
  Tracee* t = Find(tid);
  if (r < 0 || !status.stopped() || t == nullptr) {
    ThreadGone(tid, r < 0 ? WaitStatus() : status);
    return false;
  }
  fn();
  if (status.event_stop()) {
    Resume(*t, status, 0);
  } else {
    // Some other stop came first (a signal, a clone): handled as usual;
    // the interrupt's own stop follows and is resumed by Loop().
    HandleStop(tid, status);
  }
  return true;
}

void Tracer::Resume(Tracee& t, WaitStatus status, int deliver, bool step) {
  if (t.step_ip != 0 && !step) {
    if (ReadIp(t.tid) == t.step_ip) {
      step = true;  // the kernel's step has not run yet
    } else {
      t.step_ip = 0;
    }
  }
  if (status.group_stop()) {
    // A group stop: stay stopped (job control works) but keep reporting.
    (void)ptrace(PTRACE_LISTEN, t.tid, nullptr, nullptr);
    return;
  }
  (void)ptrace(step ? PTRACE_SINGLESTEP : PTRACE_CONT, t.tid, nullptr,
               reinterpret_cast<void*>(static_cast<long>(deliver)));
}

void Tracer::HandleStop(pid_t tid, WaitStatus status) {
  if (status.ended()) {
    ThreadGone(tid, status);
    return;
  }
  Tracee* t = Find(tid);
  if (t == nullptr) t = Attach(tid, false);  // a new thread, before its parent's clone event
  if (t == nullptr) return;
  if (t->fresh) {
    t->fresh = false;
    if (auto f = follows_.find(t->tgid); f != follows_.end()) {
      for (const TraceUse& use : f->second) {
        if (use.perf_stop) {
          auto events = OpenPerfStop(tid, use);
          if (!events.ok()) {
            spdlog::warn("new thread {} of process {}: cannot arm reservation {}: {}", tid, t->tgid,
                         use.group, events.error().message);
            continue;
          }
          t->uses.push_back({use, {}, std::move(events.value())});
          continue;
        }
        auto slots = ArmUse(*t, use);
        if (!slots.ok()) {
          spdlog::warn("new thread {} of process {}: cannot arm reservation {}: {}", tid, t->tgid,
                       use.group, slots.error().message);
          continue;
        }
        t->uses.push_back({use, *slots, {}});
      }
      Journal(*t);
    }
  }
  const int sig = status.stop_signal();
  switch (status.ptrace_event()) {
    case PTRACE_EVENT_CLONE: {
      unsigned long child = 0;
      if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 &&
          Find(static_cast<pid_t>(child)) == nullptr) {
        Attach(static_cast<pid_t>(child), false, t->tgid);
      }
      Resume(*t, status, 0);
      return;
    }
    case PTRACE_EVENT_EXEC:
      Exec(tid);
      return;
    case 0:
      break;  // a signal for the tracee
    default:
      Resume(*t, status, 0);
      return;
  }
  if (sig != SIGTRAP) {
    Resume(*t, status, sig);  // the target's own signal, unchanged
    return;
  }
  siginfo_t si{};
  if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si) != 0) {
    Resume(*t, status, sig);
    return;
  }
  TraceHit hit;
  hit.tid = tid;
  const Tracee::Held* held = nullptr;
  int deliver = 0;
  if (si.si_code == arch::kTrapPerf) {
    const uint64_t group = arch::PerfSigData(si);
    for (const auto& h : t->uses) {
      if (h.use.group == group && h.use.perf_stop) held = &h;
    }
    hit.address = reinterpret_cast<uint64_t>(si.si_addr);
  } else if (si.si_code == TRAP_HWBKPT) {
    auto taken = t->regs.TakeHit(si);
    if (taken.ok() && taken->has_value()) {
      const arch::PtraceHit& ph = **taken;
      for (const auto& h : t->uses) {
        for (size_t i = 0; i < h.slots.size(); ++i) {
          if (h.slots[i] == ph.slot && SlotTypeOf(h.use.specs[i].access) == ph.type) {
            held = &h;
            hit.slot = static_cast<unsigned>(i);
          }
        }
      }
      hit.address = ph.address;
      hit.ip = ReadIp(tid);
      // arm64 traps before the access: step over it (x86: nothing to do).
      auto pending = t->regs.StepOver(ph);
      if (pending.ok()) deliver = *pending;
    }
  }
  if (held == nullptr) {
    if (!t->OwnsTrap(si)) {
      Resume(*t, status, sig);  // not ours: the target's own SIGTRAP
      return;
    }
    // Ours, of a watch taken off (or a leftover's) since the trap was
    // queued: swallowed. arm64's kernel step over a perf hit must still run.
    const bool step = si.si_code == arch::kTrapPerf && arch::kDataTrapBeforeAccess;
    if (step) t->step_ip = ReadIp(tid);
    Resume(*t, status, 0, step);
    return;
  }
  hit.group = held->use.group;
  if (hit.ip == 0) hit.ip = ReadIp(tid);
  const uint64_t at = held->use.capture_address;
  const uint32_t length = held->use.capture_length;
  if (si.si_code == arch::kTrapPerf && arch::kDataTrapBeforeAccess) {
    // arm64 stops at a perf hit before the access, with the kernel's step
    // over it armed (the watchpoints are off until it is done). PTRACE_CONT
    // would cancel that step, and the watch would never fire again:
    // resume with a single step, which the kernel completes itself (it
    // turns the watchpoints back on and reports nothing). The bytes read
    // here are the old ones, exactly. The new ones are not known: no stop
    // follows the step, and a read now would race it (measured: it saw the
    // old bytes every time); the next hit's old bytes are this one's new.
    hit.old_value = procfs::ReadMemory(tid, at, length);
    t->step_ip = hit.ip;
    Resume(*t, status, deliver, true);
    if (sink_.hit) sink_.hit(hit);
    return;
  }
  // Read while the thread is held at its trap: its own access, exactly
  // (x86 reports after the access; a ptrace hit on arm64 was stepped over
  // above).
  hit.value = procfs::ReadMemory(tid, at, length);
  hit.value_at_trap = hit.value.has_value();
  // Running again before the hit is passed on: the shorter a stop, the
  // smaller the window in which a killed daemon leaves it a SIGTRAP.
  Resume(*t, status, deliver);
  if (sink_.hit) sink_.hit(hit);
}

arch::Result<std::vector<arch::PerfBreakpoint>> Tracer::OpenPerfStop(pid_t tid,
                                                                     const TraceUse& use) {
  std::vector<arch::PerfBreakpoint> events;
  arch::PerfOptions opts;
  opts.sigtrap = true;
  opts.sig_data = use.group;
  for (const arch::BreakpointSpec& spec : use.specs) {
    auto bp = arch::PerfBreakpoint::Open(spec, arch::PerfTarget::Thread(tid), opts);
    if (!bp) return bp.error();
    events.push_back(std::move(bp.value()));
  }
  return events;
}

arch::Result<std::vector<unsigned>> Tracer::ArmUse(Tracee& t, const TraceUse& use) {
  std::vector<unsigned> armed;
  const auto undo = [&] {
    for (size_t i = 0; i < armed.size(); ++i) {
      (void)t.regs.Disarm(armed[i], SlotTypeOf(use.specs[i].access));
    }
  };
  for (size_t i = 0; i < use.specs.size(); ++i) {
    const arch::SlotType type = SlotTypeOf(use.specs[i].access);
    const unsigned slot = i < use.slots.size() ? use.slots[i] : 0;
    if (i >= use.slots.size() || t.regs.armed(slot, type)) {
      undo();
      return Error{EBUSY, "slot " + std::to_string(slot) + " is already armed on thread " +
                              std::to_string(t.tid)};
    }
    if (arch::Status st = t.regs.Arm(slot, use.specs[i]); !st.ok()) {
      undo();
      return st.error();
    }
    armed.push_back(slot);
  }
  return armed;
}

void Tracer::DisarmUse(Tracee& t, const TraceUse& use) {
  for (const auto& h : t.uses) {
    if (h.use.group != use.group) continue;
    for (size_t i = 0; i < h.slots.size() && i < h.use.specs.size(); ++i) {
      (void)t.regs.Disarm(h.slots[i], SlotTypeOf(h.use.specs[i].access));
    }
  }
}

arch::Result<std::vector<unsigned>> Tracer::Add(pid_t tid, const TraceUse& use) {
  return std::move(AddAll({{tid, use}}).front());
}

std::vector<arch::Result<std::vector<unsigned>>> Tracer::AddAll(
    const std::vector<std::pair<pid_t, TraceUse>>& adds) {
  std::vector<arch::Result<std::vector<unsigned>>> out;
  for (const auto& [tid, use] : adds)
    out.push_back(Error{ESRCH, "no thread " + std::to_string(tid)});
  Run([&] {
    JournalBatch batch(*this);
    // Seized (or found traced), and the perf stops opened; the ptrace
    // backend's threads are programmed in one pass of stops below.
    std::vector<size_t> programmed;
    pid_t sibling_tgid = 0;  // the process of the last one: most likely this one's
    for (size_t i = 0; i < adds.size(); ++i) {
      // Not a structured binding: clang 14 cannot capture one in a lambda.
      const pid_t tid = adds[i].first;
      const TraceUse& use = adds[i].second;
      Tracee* t = Find(tid);
      if (t != nullptr) {
        sibling_tgid = t->tgid;
        auto it = std::find_if(t->uses.begin(), t->uses.end(),
                               [&](const Tracee::Held& h) { return h.use.group == use.group; });
        if (it != t->uses.end()) {
          out[i] = it->slots;
          continue;
        }
      } else if ((t = Attach(tid, true, sibling_tgid)) == nullptr) {
        const int err = errno;
        out[i] = ErrnoError("PTRACE_SEIZE thread " + std::to_string(tid), err);
        continue;
      } else {
        sibling_tgid = t->tgid;
      }
      if (use.perf_stop) {
        // Traced first (above), then the events: the daemon takes every trap.
        auto events = OpenPerfStop(tid, use);
        if (!events.ok()) {
          out[i] = events.error();
          if (t->uses.empty()) Release(*t);
          continue;
        }
        t->uses.push_back({use, {}, std::move(events.value())});
        out[i] = std::vector<unsigned>{};
        continue;
      }
      out[i] = Error{ESRCH, "thread " + std::to_string(tid) + " ended"};
      programmed.push_back(i);
    }
    // Journaled before they are armed, in one write: a daemon killed in
    // this pass leaves nothing armed that the next one does not clear.
    std::vector<pid_t> tids;
    for (size_t i : programmed) {
      tids.push_back(adds[i].first);
      if (const Tracee* t = Find(adds[i].first)) Journal(*t, &adds[i].second);
    }
    // Not compacted now: that would write what is armed, without these.
    FlushJournal(/*compact=*/false);
    const std::vector<bool> stopped = InStops(tids, [&](size_t k) {
      const size_t i = programmed[k];
      if (Tracee* t = Find(adds[i].first)) out[i] = ArmUse(*t, adds[i].second);
    });
    for (size_t k = 0; k < programmed.size(); ++k) {
      const size_t i = programmed[k];
      const auto& [tid, use] = adds[i];
      Tracee* t = Find(tid);  // gone if it ended while stopping
      if (stopped[k] && t != nullptr && out[i].ok()) {
        t->uses.push_back({use, *out[i], {}});  // journaled above
      } else if (stopped[k] && t != nullptr && t->uses.empty()) {
        Release(*t);
      } else if (t != nullptr) {
        Journal(*t);  // what is armed after all
      }
      if (!stopped[k] && out[i].ok()) {
        out[i] = Error{EAGAIN, "thread " + std::to_string(tid) + " did not stop to be programmed"};
      }
    }
  });
  return out;
}

arch::Status Tracer::Replace(pid_t tid, const TraceUse& use) {
  arch::Status out = Error{ESRCH, "thread " + std::to_string(tid) + " is not traced"};
  Run([&] {
    Tracee* t = Find(tid);
    if (t == nullptr) return;
    auto it = std::find_if(t->uses.begin(), t->uses.end(),
                           [&](const Tracee::Held& h) { return h.use.group == use.group; });
    if (it == t->uses.end()) return;
    if (it->use.perf_stop) {
      // New events first; the old ones close when replaced.
      auto events = OpenPerfStop(tid, use);
      if (!events.ok()) {
        out = events.error();
        return;
      }
      it->use = use;
      it->events = std::move(events.value());
      out = arch::OkStatus();
      return;
    }
    const TraceUse old = it->use;
    arch::Result<std::vector<unsigned>> armed =
        Error{ESRCH, "thread " + std::to_string(tid) + " ended"};
    const bool stopped = InStop(*t, [&] {
      DisarmUse(*t, old);
      armed = ArmUse(*t, use);
      if (!armed.ok()) (void)ArmUse(*t, old);  // the old watch, back in its slots
    });
    if ((t = Find(tid)) == nullptr || !stopped) {
      out = Error{ESRCH, "thread " + std::to_string(tid) + " ended or did not stop"};
      return;
    }
    if (!armed.ok()) {
      out = armed.error();
      return;
    }
    for (auto& h : t->uses) {
      if (h.use.group == use.group) h = {use, *armed, {}};
    }
    Journal(*t);
    out = arch::OkStatus();
  });
  return out;
}

void Tracer::Remove(pid_t tid, uint64_t group) { RemoveAll({tid}, group); }

void Tracer::RemoveAll(const std::vector<pid_t>& tids, uint64_t group) {
  Run([&] {
    JournalBatch batch(*this);
    const auto held = [&](Tracee& t) {
      return std::find_if(t.uses.begin(), t.uses.end(),
                          [&](const Tracee::Held& h) { return h.use.group == group; });
    };
    // Threads with nothing else are let go; the others lose this group's
    // registers in a stop. Both kinds in one pass of stops each.
    std::vector<pid_t> release, disarm;
    std::vector<TraceUse> uses;  // disarm's
    for (pid_t tid : tids) {
      Tracee* t = Find(tid);
      if (t == nullptr) continue;
      auto it = held(*t);
      if (it == t->uses.end()) continue;
      if (t->uses.size() == 1) {
        release.push_back(tid);
      } else if (!it->slots.empty()) {
        disarm.push_back(tid);
        uses.push_back(it->use);
      } else {
        t->Retire(group);
        t->uses.erase(it);
        Journal(*t);
      }
    }
    ReleaseAll(release);
    const std::vector<bool> stopped = InStops(disarm, [&](size_t k) {
      if (Tracee* t = Find(disarm[k])) DisarmUse(*t, uses[k]);
    });
    for (size_t k = 0; k < disarm.size(); ++k) {
      Tracee* t = Find(disarm[k]);
      if (!stopped[k] || t == nullptr) continue;
      auto it = held(*t);
      if (it == t->uses.end()) continue;
      t->Retire(group);
      t->uses.erase(it);
      Journal(*t);
    }
  });
}

void Tracer::Follow(pid_t tgid, const TraceUse& use) {
  Run([&] { follows_[tgid].push_back(use); });
}

void Tracer::Unfollow(pid_t tgid, uint64_t group) {
  Run([&] {
    auto it = follows_.find(tgid);
    if (it == follows_.end()) return;
    std::erase_if(it->second, [&](const TraceUse& u) { return u.group == group; });
    if (it->second.empty()) follows_.erase(it);
  });
}

bool Tracer::Traces(pid_t tid) {
  bool out = false;
  Run([&] { out = Find(tid) != nullptr; });
  return out;
}

void Tracer::ReleaseAll(const std::vector<pid_t>& tids) {
  // Every thread's events closed and its interrupt asked first: they stop
  // together, and each detach below mostly finds its stop there already.
  std::vector<std::pair<pid_t, bool>> asked;
  for (pid_t tid : tids) {
    Tracee* t = Find(tid);
    if (t == nullptr) continue;
    for (auto& h : t->uses) h.events.clear();
    asked.emplace_back(tid, ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0);
  }
  for (const auto& [tid, interrupted] : asked) {
    if (Tracee* t = Find(tid)) Release(*t, interrupted);
  }
}

void Tracer::Release(Tracee& t, bool interrupted) {
  const pid_t tid = t.tid;
  // No SIGTRAP may be raised once the thread is let go.
  for (auto& h : t.uses) h.events.clear();
  const auto detach = [&](int deliver) {
    (void)t.regs.DisarmAll();
    (void)ptrace(PTRACE_DETACH, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(deliver)));
  };
  if (interrupted || ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0) {
    const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
    int steps = 0;
    int traps = 0;
    // After a step of ours: when to interrupt the thread if it has not
    // stopped by itself.
    std::optional<std::chrono::steady_clock::time_point> interrupt_at;
    for (;;) {
      WaitStatus status;
      const pid_t r =
          WaitFor(tid, &status, interrupt_at ? std::min(*interrupt_at, deadline) : deadline);
      if (r == 0 && interrupt_at && std::chrono::steady_clock::now() < deadline) {
        interrupt_at.reset();
        (void)ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
        continue;
      }
      interrupt_at.reset();
      if (r != tid || !status.stopped()) {
        if (r == 0) spdlog::error("thread {} did not stop to be detached", tid);
        break;
      }
      const int sig = status.stop_signal();
      // This stop's signal is a trap of ours (a hit not yet taken, or a
      // step we asked for): it must not reach the target.
      bool swallow = false;
      if (status.signal_stop() && sig == SIGTRAP) {
        siginfo_t si{};
        (void)ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si);
        if (t.OwnsTrap(si) || (si.si_code == TRAP_TRACE && t.step_ip != 0)) {
          swallow = true;
          // arm64: the kernel's step over this perf hit is armed.
          if (si.si_code == arch::kTrapPerf && arch::kDataTrapBeforeAccess) t.step_ip = ReadIp(tid);
        }
      } else if (!status.signal_stop() && traps++ < kMaxQueuedTraps) {
        // The interrupt's stop comes before a trap whose signal the kernel
        // has queued already (a pending interrupt is reported first):
        // detached now, the thread would take that SIGTRAP and die (seen:
        // a writer killed within 40 count-1 ptrace watches). Let the
        // signal's own stop come first, and swallow it there.
        const std::vector<siginfo_t> queued = QueuedTraps(tid);
        if (std::any_of(queued.begin(), queued.end(),
                        [&](const siginfo_t& q) { return t.OwnsTrap(q); })) {
          (void)ptrace(PTRACE_CONT, tid, nullptr, nullptr);
          continue;
        }
      }
      if (t.step_ip != 0 && ReadIp(tid) == t.step_ip && steps++ < kMaxStepTries) {
        // arm64: the kernel's step over a perf hit has not run. Let it run
        // (silently: it turns the watchpoints back on, and clears the step
        // flag; a swallowed signal goes with it), then stop the thread
        // again. Not at once: an interrupt asked for now stops it before
        // it runs the step, every time.
        (void)ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr);
        interrupt_at = std::chrono::steady_clock::now() + kStepWait * steps;
        continue;
      }
      if (t.step_ip != 0 && ReadIp(tid) == t.step_ip) {
        spdlog::warn(
            "thread {}: the kernel's step over a hit did not run; its watchpoints may stay off",
            tid);
      }
      detach(status.signal_stop() && !swallow ? sig : 0);
      break;
    }
  }
  JournalNone(tid);
  tracees_.erase(tid);
}

void Tracer::ThreadGone(pid_t tid, WaitStatus status) {
  auto it = tracees_.find(tid);
  if (it == tracees_.end()) return;
  std::unique_ptr<Tracee> t = std::move(it->second);
  tracees_.erase(it);
  JournalNone(tid);
  if (sink_.exited) {
    for (const auto& h : t->uses) sink_.exited(h.use.group, tid, status.raw());
  }
}

void Tracer::Exec(pid_t tid) {
  Tracee* t = Find(tid);
  const pid_t tgid = t != nullptr ? t->tgid : tid;
  // The new image has none of our registers (the kernel flushed them) and
  // none of the old addresses: every watch of the process ends.
  std::vector<uint64_t> groups;
  std::vector<pid_t> threads;
  for (const auto& [id, other] : tracees_) {
    if (other->tgid != tgid) continue;
    threads.push_back(id);
    for (const auto& h : other->uses) {
      if (std::find(groups.begin(), groups.end(), h.use.group) == groups.end()) {
        groups.push_back(h.use.group);
      }
    }
  }
  follows_.erase(tgid);
  for (pid_t id : threads) {
    tracees_.erase(id);
    JournalNone(id);
  }
  (void)ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
  if (sink_.execed) {
    for (uint64_t g : groups) sink_.execed(g, tgid);
  }
}

// The journal: one line per change, "tid tgid start slot:type..." (the
// thread's whole armed set; none: nothing armed), appended with one write
// so that a crash leaves whole lines. The last line of a thread wins.
void Tracer::Journal(const Tracee& t, const TraceUse* adding) {
  std::string line =
      std::to_string(t.tid) + ' ' + std::to_string(t.tgid) + ' ' + std::to_string(t.start_time);
  for (arch::SlotType type : {arch::SlotType::kData, arch::SlotType::kInst}) {
    // x86 has one bank, serving both types.
    const bool one_bank = arch::kHostArch == arch::Arch::kX86_64;
    if (one_bank && type == arch::SlotType::kInst) break;
    for (unsigned s = 0; s < 16; ++s) {
      bool armed = t.regs.armed(s, type).has_value();
      for (size_t i = 0; adding != nullptr && i < adding->slots.size(); ++i) {
        armed = armed || (adding->slots[i] == s && i < adding->specs.size() &&
                          (one_bank || SlotTypeOf(adding->specs[i].access) == type));
      }
      if (armed) {
        line += ' ' + std::to_string(s) + (type == arch::SlotType::kData ? ":data" : ":inst");
      }
    }
  }
  JournalLine(line);
}

void Tracer::JournalNone(pid_t tid) { JournalLine(std::to_string(tid) + " 0 0"); }

void Tracer::JournalLine(const std::string& line) {
  if (!files_->journal) return;
  journal_pending_ += line;
  journal_pending_ += '\n';
  ++journal_lines_;
  if (journal_batches_ == 0) FlushJournal();
}

void Tracer::FlushJournal(bool compact) {
  arch::ScopedFd& journal = files_->journal;
  if (journal_pending_.empty() || !journal) return;
  const std::string text = std::exchange(journal_pending_, std::string());
  if (write(journal.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    spdlog::error("cannot append to the ptrace journal {}: {}", JournalPath(),
                  std::strerror(errno));
  }
  // Rewritten with only what is armed when mostly history.
  if (compact && journal_lines_ > 4096 && journal_lines_ > 4 * tracees_.size()) {
    const std::string tmp = JournalPath() + ".new";
    arch::ScopedFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return;
    arch::ScopedFd old = std::exchange(journal, std::move(fd));
    journal_lines_ = 0;
    ++journal_batches_;  // one write of every armed thread
    for (const auto& [tid, t] : tracees_) Journal(*t);
    --journal_batches_;
    const std::string all = std::exchange(journal_pending_, std::string());
    if (write(journal.get(), all.data(), all.size()) != static_cast<ssize_t>(all.size()) ||
        rename(tmp.c_str(), JournalPath().c_str()) != 0) {
      spdlog::error("cannot compact the ptrace journal: {}", std::strerror(errno));
    }
    old.reset();
    // The fd was opened without O_APPEND: every write follows the last.
  }
}

std::string Tracer::JournalPath() const { return journal_dir_ + "/armed"; }

void Tracer::ClearLeftovers() {
  if (journal_dir_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(journal_dir_, ec);
  std::filesystem::permissions(journal_dir_, std::filesystem::perms::owner_all, ec);
  struct Left {
    pid_t tgid = 0;
    uint64_t start = 0;
    std::vector<std::pair<unsigned, arch::SlotType>> slots;
  };
  std::map<pid_t, Left> left;
  {
    std::ifstream in(JournalPath());
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      pid_t tid = 0;
      Left l;
      if (!(fields >> tid >> l.tgid >> l.start) || tid <= 0) continue;
      for (std::string slot; fields >> slot;) {
        const size_t colon = slot.find(':');
        if (colon == std::string::npos) continue;
        l.slots.emplace_back(std::stoul(slot.substr(0, colon)), slot.substr(colon + 1) == "inst"
                                                                    ? arch::SlotType::kInst
                                                                    : arch::SlotType::kData);
      }
      left[tid] = std::move(l);  // the last line of a thread wins
    }
  }
  // Not a structured binding: clang 14 cannot capture one in the lambda below.
  for (const auto& entry : left) {
    const pid_t tid = entry.first;
    const Left& l = entry.second;
    if (l.slots.empty() || procfs::StartTime(tid, l.tgid) != l.start)
      continue;  // cleared, gone, recycled
    Tracee* t = Attach(tid, true);
    if (t == nullptr) {
      spdlog::warn("thread {} has registers left by a previous hwwatchd but cannot be traced: {}",
                   tid, std::strerror(errno));
      continue;
    }
    // A trap the leftovers raise before they are cleared must not kill it.
    t->leftover = true;
    (void)InStop(*t, [&] {
      for (const auto& [s, type] : l.slots) (void)t->regs.Disarm(s, type);
    });
    if (Find(tid) != nullptr) Release(*t);
    ++leftovers_cleared_;
    spdlog::info("cleared {} debug register(s) a previous hwwatchd left on thread {} (pid {})",
                 l.slots.size(), tid, l.tgid);
  }
  // Started afresh only now: a crash while clearing leaves the old one.
  files_->journal.reset(
      open(JournalPath().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!files_->journal) {
    spdlog::error("cannot write the ptrace journal {}: {}", JournalPath(), std::strerror(errno));
  }
}

}  // namespace hwwatch::daemon
