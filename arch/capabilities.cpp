#include "arch/capabilities.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>

#include <charconv>
#include <fstream>

#include "arch/arm64_debugreg.h"
#include "arch/child_process.h"

namespace hwwatch::arch {

std::string_view ArchName(Arch a) {
  switch (a) {
    case Arch::kX86_64:
      return "x86_64";
    case Arch::kAarch64:
      return "aarch64";
    case Arch::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view AccessName(Access a) {
  switch (a) {
    case Access::kWrite:
      return "write";
    case Access::kReadWrite:
      return "read_write";
    case Access::kExecute:
      return "execute";
    case Access::kRead:
      return "read";
  }
  return "unknown";
}

const SlotPool* HostCapabilities::PoolFor(SlotType t) const {
  for (const SlotPool& p : pools) {
    for (SlotType pt : p.types) {
      if (pt == t) return &p;
    }
  }
  return nullptr;
}

HostCapabilities X86_64Capabilities(unsigned cpus) {
  HostCapabilities caps;
  caps.arch = Arch::kX86_64;
  caps.cpus = cpus;
  caps.pools = {SlotPool{{SlotType::kData, SlotType::kInst}, 4}};
  caps.rules = {
      AccessRule{Access::kWrite, {1, 2, 4, 8}, true, 0},
      AccessRule{Access::kReadWrite, {1, 2, 4, 8}, true, 0},
      // The hardware matches the first byte of an instruction (LEN=00); the
      // kernel's perf interface spells that as bp_len = sizeof(long).
      AccessRule{Access::kExecute, {1}, false, 0},
  };
  return caps;
}

HostCapabilities Aarch64Capabilities(unsigned cpus, uint32_t watch_dbg_info,
                                     uint32_t break_dbg_info) {
  const arm64::DbgInfo watch = arm64::ParseDbgInfo(watch_dbg_info);
  const arm64::DbgInfo brk = arm64::ParseDbgInfo(break_dbg_info);
  HostCapabilities caps;
  caps.arch = Arch::kAarch64;
  caps.cpus = cpus;
  caps.debug_arch = watch.debug_arch;
  if (watch.count > 0) caps.pools.push_back(SlotPool{{SlotType::kData}, watch.count});
  if (brk.count > 0) caps.pools.push_back(SlotPool{{SlotType::kInst}, brk.count});
  const std::vector<unsigned> any{1, 2, 3, 4, 5, 6, 7, 8};
  caps.rules = {
      AccessRule{Access::kWrite, any, false, arm64::kWordSize},
      AccessRule{Access::kReadWrite, any, false, arm64::kWordSize},
      AccessRule{Access::kRead, any, false, arm64::kWordSize},
      AccessRule{Access::kExecute, {arm64::kInstructionSize}, true, 0},
  };
  if (watch.count == 0 && brk.count == 0) caps.error = "the kernel reports no debug registers";
  return caps;
}

namespace {

// The helper child: becomes traceable, stops, and waits to be killed.
int StopForTracer(void*) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 1;
  raise(SIGSTOP);
  return 0;
}

}  // namespace

Result<Arm64DbgInfoWords> ProbeArm64DbgInfo() {
#if defined(__aarch64__)
  Result<ChildProcess> child = ChildProcess::Fork(StopForTracer, nullptr);
  if (!child.ok()) return child.error();
  Result<int> st = child->Wait(std::chrono::seconds(1));
  if (!st.ok()) return st.error();
  if (!WIFSTOPPED(*st)) return Error{ECHILD, "helper child ended before it stopped"};
  Arm64DbgInfoWords words;
  for (unsigned note : {arm64::kNtArmHwWatch, arm64::kNtArmHwBreak}) {
    arm64::HwDebugState state;
    iovec iov{&state, sizeof state};
    if (ptrace(PTRACE_GETREGSET, child->pid(), reinterpret_cast<void*>(uintptr_t{note}), &iov) !=
        0) {
      return ErrnoError(note == arm64::kNtArmHwWatch ? "PTRACE_GETREGSET NT_ARM_HW_WATCH"
                                                     : "PTRACE_GETREGSET NT_ARM_HW_BREAK");
    }
    (note == arm64::kNtArmHwWatch ? words.watch : words.brk) = state.dbg_info;
  }
  return words;  // the child is killed and reaped by ~ChildProcess
#else
  (void)StopForTracer;
  return Error{EOPNOTSUPP, "NT_ARM_HW_WATCH exists on aarch64 only"};
#endif
}

unsigned ParseCpuListCount(const std::string& list) {
  unsigned highest = 0;
  bool any = false;
  const char* p = list.data();
  const char* end = list.data() + list.size();
  while (p < end && *p != '\n') {
    unsigned a = 0;
    auto r = std::from_chars(p, end, a);
    if (r.ec != std::errc()) return 0;
    p = r.ptr;
    unsigned b = a;
    if (p < end && *p == '-') {
      r = std::from_chars(p + 1, end, b);
      if (r.ec != std::errc() || b < a) return 0;
      p = r.ptr;
    }
    highest = std::max(highest, b);
    any = true;
    if (p < end && *p == ',') {
      ++p;
    } else if (p < end && *p != '\n') {
      return 0;
    }
  }
  return any ? highest + 1 : 0;
}

unsigned PossibleCpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string line;
  if (!std::getline(in, line)) return 0;
  return ParseCpuListCount(line);
}

HostCapabilities DiscoverHost() {
  HostCapabilities caps;
  const unsigned cpus = PossibleCpus();
  if constexpr (kHostArch == Arch::kX86_64) {
    caps = X86_64Capabilities(cpus);
  } else if constexpr (kHostArch == Arch::kAarch64) {
    Result<Arm64DbgInfoWords> words = ProbeArm64DbgInfo();
    if (words.ok()) {
      caps = Aarch64Capabilities(cpus, words->watch, words->brk);
    } else {
      caps.arch = kHostArch;
      caps.cpus = cpus;
      caps.error = "reading dbg_info from a helper child failed: " + words.error().message;
    }
  } else {
    caps.arch = kHostArch;
    caps.cpus = cpus;
    caps.error = "slot discovery for this architecture is not built yet";
  }
  struct utsname u {};
  if (uname(&u) == 0) caps.kernel_release = u.release;
  return caps;
}

}  // namespace hwwatch::arch
