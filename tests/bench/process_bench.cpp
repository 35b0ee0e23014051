#include "tests/bench/process_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "arch/ptrace_debugreg.h"
#include "arch/scoped_fd.h"
#include "client/client.h"

namespace hwwatch::bench {

namespace {

namespace v1 = ::hwwatch::v1;
using Clock = std::chrono::steady_clock;

constexpr size_t kChildStack = 64 * 1024;
constexpr auto kReadyWithin = std::chrono::seconds(20);
// A refused attempt (slots held outside this bench) is retried this many
// times, kRetryPause apart, before the side is given up.
constexpr int kAttempts = 6;
constexpr auto kRetryPause = std::chrono::milliseconds(50);
// Turns of each perf side (count, samples, both direct ones) per repeat.
constexpr unsigned kRounds = 5;

// The watched word. fork() copies it, so it has the same address in the
// target process, whose threads never write it.
alignas(64) uint64_t g_p9_word;

uint64_t WatchedAddress() { return reinterpret_cast<uint64_t>(&g_p9_word); }

double MicrosSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// ------------------------------------------------------------ the target process

struct ChildArgs {
  unsigned threads = 0;
  pid_t parent = 0;
  int ready_read = -1;  // the child writes how many threads it started
  int ready_write = -1;
  int hold_read = -1;  // never written: every thread blocks reading it
  int hold_write = -1;
};

// A thread of the target: blocks in read() until the bench is gone. Started
// with a bare clone() in a child of a multithreaded process, it makes raw
// system calls only (its errno is the main thread's: it never reads it).
int BlockOnPipe(void* arg) {
  const int fd = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  char c;
  while (read(fd, &c, 1) < 0) {
  }
  return 0;
}

// The child's body: async-signal-safe calls only (see arch::ChildProcess).
int TargetBody(void* p) {
  const auto* a = static_cast<const ChildArgs*>(p);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != a->parent) return 127;
  close(a->ready_read);
  close(a->hold_write);
  unsigned started = 0;
  const size_t bytes = size_t(a->threads) * kChildStack;
  void* stacks = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (stacks != MAP_FAILED) {
    constexpr int kFlags =
        CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    void* fd = reinterpret_cast<void*>(static_cast<intptr_t>(a->hold_read));
    for (unsigned i = 0; i < a->threads; ++i) {
      char* top = static_cast<char*>(stacks) + (size_t(i) + 1) * kChildStack;
      if (clone(&BlockOnPipe, top, kFlags, fd) < 0) break;
      ++started;
    }
  }
  if (write(a->ready_write, &started, sizeof started) != sizeof started) return 1;
  return BlockOnPipe(reinterpret_cast<void*>(static_cast<intptr_t>(a->hold_read)));
}

// A forked process with N blocked threads, killed and reaped on destruction.
class ThreadedProcess {
 public:
  explicit ThreadedProcess(unsigned threads) {
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    arch::ScopedFd ready_read(ready[0]), ready_write(ready[1]);
    if (pipe2(hold, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    arch::ScopedFd hold_read(hold[0]);
    hold_write_ = arch::ScopedFd(hold[1]);
    ChildArgs args{threads, getpid(), ready[0], ready[1], hold[0], hold[1]};
    auto child = arch::ChildProcess::Fork(&TargetBody, &args);
    if (!child) throw std::runtime_error(child.error().message);
    child_.emplace(std::move(child.value()));
    ready_write.reset();
    hold_read.reset();

    pollfd pfd{ready_read.get(), POLLIN, 0};
    const int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(kReadyWithin).count());
    int r;
    while ((r = poll(&pfd, 1, ms)) < 0 && errno == EINTR) {
    }
    if (r != 1 || read(ready_read.get(), &started_, sizeof started_) != sizeof started_) {
      throw std::runtime_error("the target process did not report its threads");
    }
    // clone() returned after each thread existed: all are listed now.
    tids_ = ListTasks(child_->pid());
    if (tids_.size() != size_t(started_) + 1) {
      throw std::runtime_error("the target process lists " + std::to_string(tids_.size()) +
                               " threads, not " + std::to_string(started_ + 1));
    }
  }
  ThreadedProcess(const ThreadedProcess&) = delete;
  ThreadedProcess& operator=(const ThreadedProcess&) = delete;
  ~ThreadedProcess() { Kill(); }

  // SIGKILL, then reap: first a thread this bench may still trace (its exit
  // is reported to the tracer), then the process.
  void Kill(pid_t traced = -1) {
    if (!child_) return;
    kill(child_->pid(), SIGKILL);
    if (traced > 0 && traced != child_->pid()) {
      while (waitpid(traced, nullptr, __WALL) < 0 && errno == EINTR) {
      }
    }
    child_.reset();  // ChildProcess: SIGKILL and reap
    hold_write_.reset();
  }

  pid_t pid() const { return child_ ? child_->pid() : -1; }
  unsigned started() const { return started_; }
  const std::vector<pid_t>& tids() const { return tids_; }

 private:
  static std::vector<pid_t> ListTasks(pid_t pid) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
      char* end = nullptr;
      const long tid = std::strtol(e.path().filename().c_str(), &end, 10);
      if (*end == '\0' && tid > 0) out.push_back(static_cast<pid_t>(tid));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::optional<arch::ChildProcess> child_;
  arch::ScopedFd hold_write_;
  unsigned started_ = 0;
  std::vector<pid_t> tids_;
};

// ------------------------------------------------------------ the sides

// One timed attempt: microseconds, or nullopt when refused a slot.
using Attempt = std::optional<double>;

// Reserve(target.pid) + Release, one pair, wall time.
Attempt DaemonOnce(client::Client& c, const v1::ReserveRequest& req) {
  const auto t0 = Clock::now();
  auto r = c.Reserve(req);
  if (!r) {
    if (r.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED) return std::nullopt;
    throw std::runtime_error("P9 Reserve: " + r.error().ToString());
  }
  auto rel = c.Release(r->id());
  const double us = MicrosSince(t0);
  if (!rel) throw std::runtime_error("P9 Release: " + rel.error().ToString());
  return us;
}

// The CPU task `tid` of `pid` last ran on (field 39 of its stat), or -1.
int LastCpu(pid_t pid, pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t comm_end = stat.rfind(')');
  if (comm_end == std::string::npos) return -1;
  std::istringstream rest(stat.substr(comm_end + 2));
  std::string field;
  for (int i = 3; i <= 39; ++i) {
    if (!(rest >> field)) return -1;
  }
  return std::atoi(field.c_str());
}

// Tasks by the CPU to open their events from (-1: wherever the bench runs).
using TasksByCpu = std::map<int, std::vector<pid_t>>;

// The tasks grouped by the CPU each last ran on (they are blocked: it
// stays so while the bench runs).
TasksByCpu ByLastCpu(pid_t pid, const std::vector<pid_t>& tids) {
  TasksByCpu out;
  for (pid_t tid : tids) out[LastCpu(pid, tid)].push_back(tid);
  return out;
}

// Moves the calling thread to one CPU at a time (-1: leaves it where it
// is), and puts its CPU mask back when destroyed.
class OnCpu {
 public:
  OnCpu() {
    if (sched_getaffinity(0, sizeof saved_, &saved_) != 0) {
      throw std::runtime_error("sched_getaffinity");
    }
  }
  ~OnCpu() { (void)sched_setaffinity(0, sizeof saved_, &saved_); }
  OnCpu(const OnCpu&) = delete;
  OnCpu& operator=(const OnCpu&) = delete;
  void MoveTo(int cpu) {
    if (cpu < 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    (void)sched_setaffinity(0, sizeof one, &one);
  }

 private:
  cpu_set_t saved_;
};

// perf_event_open on every task, then close every one, wall time. Each
// group's events are opened from its CPU: an event installed from another
// CPU interrupts the task's, so opening from each task's last CPU is the
// best a client can do (the moves are timed).
Attempt DirectOnce(const TasksByCpu& by_cpu, const arch::BreakpointSpec& spec) {
  OnCpu where;
  std::vector<arch::PerfBreakpoint> open;
  size_t tasks = 0;
  for (const auto& group : by_cpu) tasks += group.second.size();
  open.reserve(tasks);
  const auto t0 = Clock::now();
  for (const auto& [cpu, tids] : by_cpu) {
    where.MoveTo(cpu);
    for (pid_t tid : tids) {
      auto bp = arch::PerfBreakpoint::Open(spec, arch::PerfTarget::Thread(tid));
      if (!bp) {
        if (bp.error().Is(ENOSPC)) return std::nullopt;  // `open` closes the rest
        throw std::runtime_error("P9 perf_event_open on " + std::to_string(tid) + ": " +
                                 bp.error().message);
      }
      open.push_back(std::move(bp.value()));
    }
  }
  open.clear();
  return MicrosSince(t0);
}

// Thrown by PtraceOnce; `traced` is a thread left traced (or -1).
struct PtraceFailure {
  std::string why;
  pid_t traced = -1;
};

// Stops a seized thread: PTRACE_INTERRUPT, then waitpid until its stop.
void InterruptAndWait(pid_t tid) {
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
    throw PtraceFailure{"PTRACE_INTERRUPT: " + std::string(std::strerror(errno)), tid};
  }
  int status = 0;
  pid_t w;
  while ((w = waitpid(tid, &status, __WALL)) < 0 && errno == EINTR) {
  }
  if (w != tid || !WIFSTOPPED(status) || (status >> 16) != PTRACE_EVENT_STOP) {
    throw PtraceFailure{"thread " + std::to_string(tid) + " did not stop for PTRACE_INTERRUPT",
                        tid};
  }
}

void Seize(pid_t tid) {
  if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
    throw PtraceFailure{"PTRACE_SEIZE " + std::to_string(tid) + ": " + std::strerror(errno)};
  }
}

// DR0/DR7 through PtraceDebugRegs on a stopped thread; false when refused
// (ENOSPC: held outside this bench).
bool ArmDr0(pid_t tid, const arch::BreakpointSpec& spec) {
  arch::PtraceDebugRegs regs(tid);
  const arch::Status armed = regs.Arm(0, spec);
  if (!armed && !armed.error().Is(ENOSPC)) {
    throw PtraceFailure{"arming DR0: " + armed.error().message, tid};
  }
  return armed.ok();
}

void DisarmDr0(pid_t tid) {
  arch::PtraceDebugRegs regs(tid);
  if (arch::Status s = regs.Disarm(0, arch::SlotType::kData); !s) {
    throw PtraceFailure{"disarming DR0: " + s.error().message, tid};
  }
}

void Detach(pid_t tid) {
  if (ptrace(PTRACE_DETACH, tid, nullptr, nullptr) != 0) {
    throw PtraceFailure{"PTRACE_DETACH: " + std::string(std::strerror(errno)), tid};
  }
}

// What a debugger does to put one watch on every thread and take it off
// again, one thread at a time, in one stop each: PTRACE_SEIZE,
// PTRACE_INTERRUPT, waitpid until the stop, DR0/DR7 through
// PtraceDebugRegs, disarm, PTRACE_DETACH.
Attempt PtraceOnce(const std::vector<pid_t>& tids, const arch::BreakpointSpec& spec) {
  const auto t0 = Clock::now();
  for (pid_t tid : tids) {
    Seize(tid);
    InterruptAndWait(tid);
    const bool armed = ArmDr0(tid, spec);
    if (armed) DisarmDr0(tid);
    Detach(tid);
    if (!armed) return std::nullopt;
  }
  return MicrosSince(t0);
}

// A debugger that holds the watch while the threads run, as hwwatchd's
// ptrace backend does between Reserve and Release: one stop per thread to
// arm it (seize, interrupt, wait, arm, PTRACE_CONT), a second one to take
// it off (interrupt, wait, disarm, detach). A thread stopped to be written
// is the kernel's rule (ptrace_check_attach), so this is the least a
// holder of ptrace registers pays.
Attempt PtraceHeldOnce(const std::vector<pid_t>& tids, const arch::BreakpointSpec& spec) {
  const auto t0 = Clock::now();
  size_t armed = 0;
  auto let_go = [&] {  // the second stop of every thread armed so far
    for (size_t i = 0; i < armed; ++i) {
      InterruptAndWait(tids[i]);
      DisarmDr0(tids[i]);
      Detach(tids[i]);
    }
  };
  for (; armed < tids.size(); ++armed) {
    const pid_t tid = tids[armed];
    Seize(tid);
    InterruptAndWait(tid);
    if (!ArmDr0(tid, spec)) {
      Detach(tid);
      let_go();
      return std::nullopt;
    }
    if (ptrace(PTRACE_CONT, tid, nullptr, nullptr) != 0) {
      throw PtraceFailure{"PTRACE_CONT: " + std::string(std::strerror(errno)), tid};
    }
  }
  let_go();
  return MicrosSince(t0);
}

// `once` until it is not refused, at most kAttempts times.
template <class F>
Attempt Retried(F&& once, uint64_t* refusals) {
  for (int i = 0; i < kAttempts; ++i) {
    if (Attempt us = once()) return us;
    ++*refusals;
    std::this_thread::sleep_for(kRetryPause);
  }
  return std::nullopt;
}

void Measure(const std::string& socket, unsigned repeat, ThreadedProcess& target,
             ProcessTargetFigures* out) {
  auto c = client::Client::Connect(socket);
  if (!c) throw std::runtime_error(c.error().ToString());
  client::Client& client = *c.value();
  client.set_call_timeout(std::chrono::seconds(60));

  const arch::BreakpointSpec spec{WatchedAddress(), 8, arch::Access::kWrite};
  v1::ReserveRequest samples;
  samples.mutable_target()->set_pid(target.pid());
  v1::Watch* w = samples.mutable_watch();
  w->set_address(WatchedAddress());
  w->set_length(8);
  w->set_access(v1::ACCESS_WRITE);
  samples.set_backend(v1::BACKEND_PERF);
  v1::ReserveRequest count = samples;
  count.set_delivery(v1::DELIVERY_COUNT);

  struct Side {
    const char* name;
    std::function<Attempt()> once;
    std::vector<double> runs;
    bool given_up = false;
  };
  const TasksByCpu anywhere{{-1, target.tids()}};
  const TasksByCpu by_cpu = ByLastCpu(target.pid(), target.tids());
  Side sides[] = {
      {"daemon count", [&] { return DaemonOnce(client, count); }, {}},
      {"daemon samples", [&] { return DaemonOnce(client, samples); }, {}},
      {"direct perf_event_open", [&] { return DirectOnce(anywhere, spec); }, {}},
      {"direct perf_event_open from each task's CPU", [&] { return DirectOnce(by_cpu, spec); }, {}},
  };
  uint64_t ignored = 0;
  for (Side& s : sides) (void)Retried(s.once, &ignored);  // warm-up
  // Interleaved, so that noise on this shared machine hits every side of a
  // ratio alike; kRounds turns per repeat, and the median of all of a
  // side's turns (a burst of load from others spoils a few turns of every
  // side, not one side's figure).
  for (unsigned r = 0; r < repeat * kRounds; ++r) {
    for (Side& s : sides) {
      if (s.given_up) continue;
      if (Attempt us = Retried(s.once, &out->refusals)) {
        s.runs.push_back(*us);
        continue;
      }
      s.given_up = true;
      if (!out->refused.empty()) out->refused += "; ";
      out->refused += std::string(s.name) + " refused a slot " + std::to_string(kAttempts) +
                      " times in a row (registers held outside this bench)";
    }
  }
  out->daemon_count_us = Median(sides[0].runs);
  out->daemon_samples_us = Median(sides[1].runs);
  out->direct_us = Median(sides[2].runs);
  out->direct_local_us = Median(sides[3].runs);

  // Last: registers written through ptrace stay reserved (disabled) on
  // the threads until they exit, which would tilt the other sides.
  v1::ReserveRequest traced = samples;
  traced.set_backend(v1::BACKEND_PTRACE);
  std::vector<double> daemon_runs;
  for (unsigned r = 0; r <= repeat; ++r) {  // the first is a warm-up
    Attempt us = Retried([&] { return DaemonOnce(client, traced); }, &out->refusals);
    if (!us) break;
    if (r > 0) daemon_runs.push_back(*us);
  }
  out->daemon_ptrace_us = Median(daemon_runs);
#if defined(__x86_64__)
  // One stop per thread (arm and disarm at once), then two (the watch held
  // in between), interleaved per repeat.
  std::vector<double> runs, held_runs;
  try {
    for (unsigned r = 0; r <= repeat; ++r) {  // the first is a warm-up
      Attempt us = Retried([&] { return PtraceOnce(target.tids(), spec); }, &out->refusals);
      Attempt held =
          us ? Retried([&] { return PtraceHeldOnce(target.tids(), spec); }, &out->refusals)
             : std::nullopt;
      if (!us || !held) {
        out->ptrace_not_measured = "DR0 refused (ENOSPC) " + std::to_string(kAttempts) +
                                   " times in a row: registers held outside this bench";
        return;
      }
      if (r > 0) {
        runs.push_back(*us);
        held_runs.push_back(*held);
      }
    }
  } catch (const PtraceFailure& f) {
    out->ptrace_not_measured = f.why;
    target.Kill(f.traced);
    return;
  }
  out->ptrace_us = Median(runs);
  out->ptrace_held_us = Median(held_runs);
#else
  out->ptrace_not_measured = "the ptrace figure is measured on x86_64 only";
#endif
}

}  // namespace

ProcessTargetFigures MeasureProcessTarget(const std::string& socket, unsigned threads,
                                          unsigned repeat) {
  ProcessTargetFigures out;
  try {
    ThreadedProcess target(threads);
    out.threads = target.started();
    out.tasks = static_cast<unsigned>(target.tids().size());
    if (out.threads < threads) {
      std::fprintf(stderr, "hwwatch-bench rpc: only %u of %u P9 threads could be started\n",
                   out.threads, threads);
    }
    Measure(socket, std::max(1u, repeat), target, &out);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace hwwatch::bench
