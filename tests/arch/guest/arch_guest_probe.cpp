// A self-contained check of the arch/ backends against whatever kernel runs
// it, without GoogleTest, so it can be built statically and run as /init in
// an emulated machine (x86_64 or aarch64) as well as on a host:
//   aarch64-linux-gnu-g++ -std=c++20 -static -I<repo> arch_guest_probe.cpp <repo>/arch/*.cpp
// Prints one line per check ("PASS name: detail" / "FAIL name: detail"),
// then "PROBE DONE failures=N". As PID 1 it powers the machine off.
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "arch/capabilities.h"
#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "arch/perf_ring.h"
#include "arch/ptrace_debugreg.h"
#include "arch/region.h"
#include "arch/self_test.h"

using namespace hwwatch::arch;
using namespace std::chrono_literals;

namespace {

int g_failures = 0;

void Check(bool ok, const std::string& name, const std::string& detail) {
  std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

constexpr int kWrites = 3;
alignas(64) volatile uint8_t g_bytes[32];

uint64_t At(int i) { return reinterpret_cast<uint64_t>(&g_bytes[i]); }

// Child: traceable, stops, then writes byte `arg` three times (values 1..3)
// and the bytes beside the watched range once each.
struct WriterArgs {
  int first;
  int length;
};

int Writer(void* p) {
  auto* a = static_cast<WriterArgs*>(p);
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 100;
  raise(SIGSTOP);
  if (a->first > 0) g_bytes[a->first - 1] = 0x55;  // just before
  g_bytes[a->first + a->length] = 0x55;            // just after
  for (int i = 1; i <= kWrites; ++i) g_bytes[a->first] = static_cast<uint8_t>(i);
  g_bytes[a->first + a->length - 1] = 9;  // the last byte
  return 0;
}

// ptrace: watch [first, first + length) decomposed exactly over registers;
// expect kWrites + 1 hits (first byte thrice, last byte once; one hit when
// first and last coincide is counted per write anyway) and none beside.
void PtraceRegion(int first, int length) {
  const std::string name = "ptrace_region_" + std::to_string(first) + "+" + std::to_string(length);
  WriterArgs args{first, length};
  auto child = ChildProcess::Fork(Writer, &args);
  if (!child.ok()) return Check(false, name, child.error().message);
  auto st = child->Wait(2s);
  if (!st.ok() || !WIFSTOPPED(*st)) return Check(false, name, "child did not stop");
  auto cover = PlanCover(kHostArch, {At(first), static_cast<uint64_t>(length), Access::kWrite},
                         CoverMode::kExact, 4);
  if (!cover.ok()) return Check(false, name, cover.error().message);
  PtraceDebugRegs regs(child->pid());
  for (unsigned i = 0; i < cover->needed(); ++i) {
    Status s = regs.Arm(i, cover->Spec(kHostArch, i));
    if (!s.ok()) return Check(false, name, "arm " + std::to_string(i) + ": " + s.error().message);
  }
  int hits = 0;
  bool values_ok = true;
  std::string seen;
  int deliver = 0;
  for (int stops = 0; stops < 20; ++stops) {
    if (ptrace(PTRACE_CONT, child->pid(), nullptr, deliver) != 0) break;
    deliver = 0;
    st = child->Wait(2s);
    if (!st.ok()) return Check(false, name, st.error().message);
    if (WIFEXITED(*st)) break;
    if (WSTOPSIG(*st) != SIGTRAP) {
      deliver = WSTOPSIG(*st);
      continue;
    }
    siginfo_t si{};
    ptrace(PTRACE_GETSIGINFO, child->pid(), nullptr, &si);
    auto hit = regs.TakeHit(si);
    if (!hit.ok() || !hit->has_value()) {
      seen += " stray";
      continue;
    }
    ++hits;
    char buf[96];
    std::snprintf(buf, sizeof buf, " slot%u@+%lld", (*hit)->slot,
                  static_cast<long long>((*hit)->address - At(0)));
    seen += buf;
    auto pending = regs.StepOver(**hit);
    if (!pending.ok()) return Check(false, name, "step-over: " + pending.error().message);
    deliver = *pending;
    // After the hit (arm64: after the step-over) the new value is in memory.
    if (hits <= kWrites) {
      const uint64_t word = At(first) & ~uint64_t{7};
      errno = 0;
      long v = ptrace(PTRACE_PEEKDATA, child->pid(), reinterpret_cast<void*>(word), nullptr);
      const int byte =
          static_cast<int>((static_cast<unsigned long>(v) >> (8 * (At(first) - word))) & 0xff);
      if (errno != 0 || byte != hits) values_ok = false;
    }
  }
  const int want = kWrites + 1;
  Check(hits == want && values_ok, name,
        std::to_string(cover->needed()) + " registers, " + std::to_string(hits) + " hits (want " +
            std::to_string(want) + "), new value after each hit " + (values_ok ? "yes" : "NO") +
            ":" + seen);
}

__attribute__((noinline)) int Called(int x) {
  asm volatile("" ::: "memory");
  return x + 1;
}

int Caller(void*) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 100;
  raise(SIGSTOP);
  int v = 0;
  for (int i = 0; i < kWrites; ++i) v = Called(v);
  return v == kWrites ? 0 : 101;
}

// ptrace execute breakpoint on a function called kWrites times; the child
// checks it still computed the right result (arm64 needs the step-over).
void PtraceExecute() {
  auto child = ChildProcess::Fork(Caller, nullptr);
  if (!child.ok()) return Check(false, "ptrace_execute", child.error().message);
  auto st = child->Wait(2s);
  if (!st.ok() || !WIFSTOPPED(*st)) return Check(false, "ptrace_execute", "child did not stop");
  const uint64_t fn = reinterpret_cast<uint64_t>(&Called);
  PtraceDebugRegs regs(child->pid());
  Status s = regs.Arm(0, {fn, 4, Access::kExecute});
  if (!s.ok()) return Check(false, "ptrace_execute", s.error().message);
  int hits = 0;
  bool at_fn = true;
  int exit_code = -1;
  for (int stops = 0; stops < 20; ++stops) {
    if (ptrace(PTRACE_CONT, child->pid(), nullptr, nullptr) != 0) break;
    st = child->Wait(2s);
    if (!st.ok()) break;
    if (WIFEXITED(*st)) {
      exit_code = WEXITSTATUS(*st);
      break;
    }
    siginfo_t si{};
    ptrace(PTRACE_GETSIGINFO, child->pid(), nullptr, &si);
    auto hit = regs.TakeHit(si);
    if (!hit.ok() || !hit->has_value()) continue;
    ++hits;
    at_fn = at_fn && (*hit)->address == fn;
    if (!regs.StepOver(**hit).ok()) break;
  }
  Check(hits == kWrites && at_fn && exit_code == 0, "ptrace_execute",
        std::to_string(hits) + " stops at the function for " + std::to_string(kWrites) +
            " calls, child exit " + std::to_string(exit_code));
}

// perf sampling: samples carry the watched address and the writer's tid.
void PerfSampling() {
  PerfOptions o;
  o.sampling = true;
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  auto bp = PerfBreakpoint::Open({At(8), 8, Access::kWrite}, PerfTarget::Thread(tid), o);
  if (!bp.ok()) return Check(false, "perf_sampling", bp.error().message);
  auto ring = PerfRingBuffer::Map(bp->fd(), 2, BuildBreakpointAttr(bp->spec(), o).sample_type);
  if (!ring.ok()) return Check(false, "perf_sampling", ring.error().message);
  for (int i = 0; i < kWrites; ++i) g_bytes[8 + i] = 1;
  g_bytes[16] = 1;  // outside
  ParsedRing p = ring->Read();
  int samples = 0;
  bool fields_ok = true;
  for (const PerfRecord& r : p.records) {
    if (r.kind != PerfRecord::Kind::kSample) continue;
    ++samples;
    fields_ok = fields_ok && r.sample.addr == At(8) && static_cast<pid_t>(r.sample.tid) == tid &&
                r.sample.ip != 0;
  }
  Check(samples == kWrites && fields_ok && !p.corrupt, "perf_sampling",
        std::to_string(samples) + " samples, fields " + (fields_ok ? "ok" : "WRONG"));
}

}  // namespace

int main() {
  HostCapabilities caps = DiscoverHost();
  std::string pools;
  for (const SlotPool& p : caps.pools) {
    pools += " " + std::to_string(p.slots) +
             (p.mixed() ? " mixed" : (p.types[0] == SlotType::kData ? " data" : " inst"));
  }
  Check(caps.error.empty() && !caps.pools.empty(), "capabilities",
        std::string(ArchName(caps.arch)) + " debug_arch " + std::to_string(caps.debug_arch) +
            " pools" + pools + (caps.error.empty() ? "" : " error: " + caps.error));

  for (const SelfTestResult& r : RunSelfTest(900ms)) {
    Check(r.outcome == SelfTestOutcome::kFires, "self_test_" + std::string(BackendName(r.backend)),
          std::string(SelfTestOutcomeName(r.outcome)) + " (" + r.detail + ")");
  }
  PtraceRegion(0, 8);
  // Unaligned 12 bytes over several registers (x86: 4 of DR0-3; arm64: 2).
  PtraceRegion(kHostArch == Arch::kX86_64 ? 2 : 3, 12);
  PtraceRegion(5, 2);
  PtraceExecute();
  PerfSampling();

  std::printf("PROBE DONE failures=%d\n", g_failures);
  std::fflush(stdout);
  if (getpid() == 1) {
    sync();
    reboot(RB_POWER_OFF);
  }
  return g_failures == 0 ? 0 : 1;
}
