#include "arch/self_test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <optional>

#include "arch/arch.h"
#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "arch/ptrace_debugreg.h"
#include "arch/scoped_fd.h"

namespace hwwatch::arch {
namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kWrites = 5;

// The watched word. fork() copies the address space, so the child writes
// the same virtual address the parent arms.
alignas(8) volatile uint64_t g_self_test_word;

uint64_t WordAddress() { return reinterpret_cast<uint64_t>(&g_self_test_word); }

void WriteWord() {
  for (unsigned i = 1; i <= kWrites; ++i) g_self_test_word = i;
}

// perf child: waits for the go byte (the event is open by then), writes.
int PerfChild(void* arg) {
  const int go = *static_cast<int*>(arg);
  char c;
  while (read(go, &c, 1) < 0 && errno == EINTR) {
  }
  WriteWord();
  return 0;
}

// ptrace child: becomes a tracee and stops so the tracer can arm it.
int PtraceChild(void*) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 1;
  raise(SIGSTOP);
  WriteWord();
  return 0;
}

std::chrono::milliseconds Left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? left : std::chrono::milliseconds(0);
}

SelfTestResult Unavailable(Backend b, std::string why) {
  return SelfTestResult{b, SelfTestOutcome::kUnavailable, std::move(why), 0, 0};
}

SelfTestResult Judge(Backend b, unsigned hits) {
  SelfTestResult r{b, SelfTestOutcome::kFires, "", kWrites, hits};
  const std::string counts = std::to_string(hits) + " of " + std::to_string(kWrites) + " writes";
  if (hits == 0) {
    r.outcome = SelfTestOutcome::kNeverFires;
    r.detail = "registers accepted but never fire: " + counts +
               " hit (debug exceptions are not delivered, e.g. by this hypervisor)";
  } else {
    r.detail = counts + " hit";
  }
  return r;
}

SelfTestResult RunPerf(Clock::time_point deadline) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Unavailable(Backend::kPerf, ErrnoError("pipe2").message);
  ScopedFd read_end(fds[0]);
  ScopedFd write_end(fds[1]);
  int go = read_end.get();
  Result<ChildProcess> child = ChildProcess::Fork(PerfChild, &go);
  if (!child.ok()) return Unavailable(Backend::kPerf, child.error().message);
  Result<PerfBreakpoint> bp =
      PerfBreakpoint::Open({WordAddress(), 8, Access::kWrite}, PerfTarget::Thread(child->pid()));
  if (!bp.ok()) return Unavailable(Backend::kPerf, bp.error().message);
  if (write(write_end.get(), "g", 1) != 1) {
    return Unavailable(Backend::kPerf, ErrnoError("write(go pipe)").message);
  }
  Result<int> st = child->Wait(Left(deadline));
  if (!st.ok()) return Unavailable(Backend::kPerf, "child: " + st.error().message);
  if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
    return Unavailable(Backend::kPerf, "child did not exit cleanly");
  }
  // The count of an event whose task exited stays readable.
  Result<uint64_t> count = bp->ReadCount();
  if (!count.ok()) return Unavailable(Backend::kPerf, count.error().message);
  return Judge(Backend::kPerf, static_cast<unsigned>(*count));
}

SelfTestResult RunPtrace(Clock::time_point deadline) {
  Result<ChildProcess> child = ChildProcess::Fork(PtraceChild, nullptr);
  if (!child.ok()) return Unavailable(Backend::kPtrace, child.error().message);
  Result<int> st = child->Wait(Left(deadline));
  if (!st.ok()) return Unavailable(Backend::kPtrace, "child: " + st.error().message);
  if (!WIFSTOPPED(*st)) return Unavailable(Backend::kPtrace, "child could not become a tracee");
  // Should this process die mid-test, the kernel kills the tracee (its
  // registers would otherwise outlive us).
  ptrace(PTRACE_SETOPTIONS, child->pid(), nullptr, PTRACE_O_EXITKILL);
  PtraceDebugRegs regs(child->pid());
  if (Status s = regs.Arm(0, {WordAddress(), 8, Access::kWrite}); !s.ok()) {
    return Unavailable(Backend::kPtrace, s.error().message);
  }
  unsigned hits = 0;
  int deliver = 0;
  // Each write stops at most once (plus a step-over stop on arm64, which
  // StepOver consumes); anything beyond is a runaway and ends the test.
  for (unsigned stops = 0; stops <= 2 * kWrites + 2; ++stops) {
    if (ptrace(PTRACE_CONT, child->pid(), nullptr, deliver) != 0) {
      return Unavailable(Backend::kPtrace, ErrnoError("PTRACE_CONT").message);
    }
    deliver = 0;
    st = child->Wait(Left(deadline));
    if (!st.ok()) return Unavailable(Backend::kPtrace, "child: " + st.error().message);
    if (WIFEXITED(*st) || WIFSIGNALED(*st)) {
      if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
        return Unavailable(Backend::kPtrace, "child did not exit cleanly");
      }
      return Judge(Backend::kPtrace, hits);
    }
    if (WSTOPSIG(*st) != SIGTRAP) {
      deliver = WSTOPSIG(*st);
      continue;
    }
    siginfo_t si{};
    ptrace(PTRACE_GETSIGINFO, child->pid(), nullptr, &si);
    Result<std::optional<PtraceHit>> hit = regs.TakeHit(si);
    if (!hit.ok()) return Unavailable(Backend::kPtrace, hit.error().message);
    if (!hit->has_value()) continue;
    ++hits;
    Result<int> pending = regs.StepOver(**hit);
    if (!pending.ok()) return Unavailable(Backend::kPtrace, pending.error().message);
    deliver = *pending;
  }
  return Unavailable(Backend::kPtrace, "too many stops");
}

}  // namespace

std::string_view BackendName(Backend b) { return b == Backend::kPerf ? "perf" : "ptrace"; }

std::string_view SelfTestOutcomeName(SelfTestOutcome o) {
  switch (o) {
    case SelfTestOutcome::kFires:
      return "fires";
    case SelfTestOutcome::kNeverFires:
      return "never fires";
    case SelfTestOutcome::kUnavailable:
      break;
  }
  return "unavailable";
}

std::vector<SelfTestResult> RunSelfTest(std::chrono::milliseconds budget) {
  const Clock::time_point start = Clock::now();
  std::vector<SelfTestResult> out;
  out.push_back(RunPerf(start + budget / 2));
  out.push_back(RunPtrace(start + budget));
  return out;
}

}  // namespace hwwatch::arch
