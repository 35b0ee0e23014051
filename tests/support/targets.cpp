#include "tests/support/targets.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "arch/perf_event.h"

namespace hwwatch::testing {

Sleeper::Sleeper() : pid_(fork()) {
  if (pid_ == 0) {
    for (;;) pause();
  }
}

void Sleeper::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, __WALL);
  pid_ = -1;
}

namespace {

volatile uint64_t g_word;

unsigned CountOpens(arch::Access access, arch::PerfTarget target) {
  std::vector<arch::PerfBreakpoint> held;
  for (int i = 0; i < 16; ++i) {
    auto bp = arch::PerfBreakpoint::Open({reinterpret_cast<uint64_t>(&g_word), 8, access}, target);
    if (!bp) break;
    held.push_back(std::move(bp.value()));
  }
  return static_cast<unsigned>(held.size());
}

}  // namespace

unsigned KernelFreeOnThread(pid_t tid) {
  return CountOpens(arch::Access::kWrite, arch::PerfTarget::Thread(tid));
}

unsigned KernelFreeOnCpu(unsigned cpu) {
  return CountOpens(arch::Access::kReadWrite, arch::PerfTarget::Cpu(static_cast<int>(cpu)));
}

}  // namespace hwwatch::testing
