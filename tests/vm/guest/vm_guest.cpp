// The real-hit matrix, run as /init of an emulated x86_64 or aarch64 machine
// (tests/vm/boot.sh builds it statically from the project's arch/ sources).
// No GoogleTest: it prints one line per case,
//   CASE <arch> <name> PASS|FAIL: <what it saw>
// then "MATRIX DONE failures=N"; as PID 1 it prints "GUEST DONE" and powers
// the machine off (else tests/vm/guest/init-daemon.sh goes on).
// The ctest cases (tests/vm/CMakeLists.txt) read those lines.
//
// Every access the target makes goes through one of a few instructions
// marked by global assembler labels, so a hit's instruction pointer is
// checked exactly: x86 reports data hits after the access (ip = the next
// instruction), arm64 before it (ip = the access); both report execute
// hits at the instruction.
#include <elf.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "arch/capabilities.h"
#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "arch/perf_ring.h"
#include "arch/ptrace_debugreg.h"
#include "arch/region.h"
#include "arch/self_test.h"

using namespace hwwatch::arch;
using namespace std::chrono_literals;

extern "C" {
extern const char hwvm_store32[], hwvm_store32_end[];
extern const char hwvm_store8[], hwvm_store8_end[];
extern const char hwvm_load32[], hwvm_load32_end[];
extern const char hwvm_exec[];
}

namespace {

// ---- the target's instructions -------------------------------------------

#if defined(__x86_64__)
__attribute__((noinline, noclone)) void Store32(volatile uint32_t* p, uint32_t v) {
  asm volatile(
      ".globl hwvm_store32\nhwvm_store32:\n\tmovl %k1, (%0)\n"
      ".globl hwvm_store32_end\nhwvm_store32_end:\n" ::"r"(p),
      "r"(v)
      : "memory");
}
__attribute__((noinline, noclone)) void Store8(volatile uint8_t* p, uint8_t v) {
  asm volatile(
      ".globl hwvm_store8\nhwvm_store8:\n\tmovb %b1, (%0)\n"
      ".globl hwvm_store8_end\nhwvm_store8_end:\n" ::"r"(p),
      "q"(v)
      : "memory");
}
__attribute__((noinline, noclone)) uint32_t Load32(const volatile uint32_t* p) {
  uint32_t v;
  asm volatile(
      ".globl hwvm_load32\nhwvm_load32:\n\tmovl (%1), %k0\n"
      ".globl hwvm_load32_end\nhwvm_load32_end:\n"
      : "=r"(v)
      : "r"(p)
      : "memory");
  return v;
}
__attribute__((noinline, noclone)) void Exec() {
  asm volatile("nop\n.globl hwvm_exec\nhwvm_exec:\n\tnop\n\tnop\n" ::: "memory");
}
constexpr bool kTrapsAfterAccess = true;
#elif defined(__aarch64__)
__attribute__((noinline, noclone)) void Store32(volatile uint32_t* p, uint32_t v) {
  asm volatile(
      ".globl hwvm_store32\nhwvm_store32:\n\tstr %w1, [%0]\n"
      ".globl hwvm_store32_end\nhwvm_store32_end:\n" ::"r"(p),
      "r"(v)
      : "memory");
}
__attribute__((noinline, noclone)) void Store8(volatile uint8_t* p, uint8_t v) {
  asm volatile(
      ".globl hwvm_store8\nhwvm_store8:\n\tstrb %w1, [%0]\n"
      ".globl hwvm_store8_end\nhwvm_store8_end:\n" ::"r"(p),
      "r"(v)
      : "memory");
}
__attribute__((noinline, noclone)) uint32_t Load32(const volatile uint32_t* p) {
  uint32_t v;
  asm volatile(
      ".globl hwvm_load32\nhwvm_load32:\n\tldr %w0, [%1]\n"
      ".globl hwvm_load32_end\nhwvm_load32_end:\n"
      : "=r"(v)
      : "r"(p)
      : "memory");
  return v;
}
__attribute__((noinline, noclone)) void Exec() {
  asm volatile("nop\n.globl hwvm_exec\nhwvm_exec:\n\tnop\n\tnop\n" ::: "memory");
}
constexpr bool kTrapsAfterAccess = false;
#else
#error "the vm guest is for x86_64 and aarch64"
#endif

uint64_t Addr(const volatile void* p) { return reinterpret_cast<uint64_t>(p); }

// The ip a hit of the access at [at, end) reports.
uint64_t DataHitIp(const char* at, const char* end) { return Addr(kTrapsAfterAccess ? end : at); }

// Watched memory: word 2 (bytes 8..11) for the 4-byte cases; words 1 and
// 3 are its neighbours (on arm64 word 3 shares word 2's doubleword).
alignas(64) volatile uint32_t g_words[8];
alignas(64) volatile uint8_t g_bytes[32];
constexpr int kWatchedWord = 2;

// ---- what the target does (async-signal-safe: it runs in a fork) ---------

enum class Script { kWrite, kReadWrite, kExecute, kRegion12 };

// The unaligned 12-byte region: x86 bytes 2..13 need 4 registers (2+4+4+2),
// arm64 bytes 3..14 need 2 (one per doubleword).
constexpr int kRegionFirst = kHostArch == Arch::kX86_64 ? 2 : 3;
constexpr int kRegionLength = 12;
constexpr int kRegionLast = kRegionFirst + kRegionLength - 1;

struct Expected {
  uint64_t ip;
  uint64_t accessed;              // the byte address the access starts at
  std::optional<uint64_t> value;  // a store: the value memory holds after it
};

void RunScript(Script s) {
  volatile uint32_t* w = &g_words[kWatchedWord];
  switch (s) {
    case Script::kWrite:
      (void)Load32(w);  // a read: not a hit for a write watch
      Store32(w - 1, 0x11);
      Store32(w + 1, 0x33);
      for (uint32_t v = 1; v <= 3; ++v) Store32(w, v);
      break;
    case Script::kReadWrite:
      Store32(w - 1, 0x11);
      (void)Load32(w + 1);
      (void)Load32(w);
      Store32(w, 7);
      break;
    case Script::kExecute:
      Store32(w, 5);  // data accesses: not hits for an execute watch
      for (int i = 0; i < 3; ++i) Exec();
      break;
    case Script::kRegion12:
      Store8(&g_bytes[kRegionFirst - 1], 0x55);
      Store8(&g_bytes[kRegionLast + 1], 0x55);
      Store8(&g_bytes[kRegionFirst], 1);
      Store8(&g_bytes[kRegionLast], 2);
      break;
  }
}

std::vector<Expected> ExpectedHits(Script s) {
  const uint64_t w = Addr(&g_words[kWatchedWord]);
  const uint64_t st32 = DataHitIp(hwvm_store32, hwvm_store32_end);
  const uint64_t ld32 = DataHitIp(hwvm_load32, hwvm_load32_end);
  const uint64_t st8 = DataHitIp(hwvm_store8, hwvm_store8_end);
  switch (s) {
    case Script::kWrite:
      return {{st32, w, 1}, {st32, w, 2}, {st32, w, 3}};
    case Script::kReadWrite:
      return {{ld32, w, std::nullopt}, {st32, w, 7}};
    case Script::kExecute: {
      const uint64_t x = Addr(hwvm_exec);
      return {{x, x, std::nullopt}, {x, x, std::nullopt}, {x, x, std::nullopt}};
    }
    case Script::kRegion12:
      return {{st8, Addr(&g_bytes[kRegionFirst]), 1}, {st8, Addr(&g_bytes[kRegionLast]), 2}};
  }
  return {};
}

Region Watched(Script s) {
  switch (s) {
    case Script::kWrite:
      return {Addr(&g_words[kWatchedWord]), 4, Access::kWrite};
    case Script::kReadWrite:
      return {Addr(&g_words[kWatchedWord]), 4, Access::kReadWrite};
    case Script::kExecute:
      return {Addr(hwvm_exec), 1, Access::kExecute};
    case Script::kRegion12:
      return {Addr(&g_bytes[kRegionFirst]), kRegionLength, Access::kWrite};
  }
  return {};
}

// ---- reporting -------------------------------------------------------------

int g_failures = 0;

void Report(const std::string& name, bool ok, const std::string& detail) {
  std::printf("CASE %s %s %s: %s\n", std::string(ArchName(kHostArch)).c_str(), name.c_str(),
              ok ? "PASS" : "FAIL", detail.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// An ip as "0x...(label)" when it is one of the marked instructions.
std::string Ip(uint64_t ip) {
  const std::pair<const char*, const char*> labels[] = {
      {hwvm_store32, "store32"}, {hwvm_store32_end, "store32_end"},
      {hwvm_store8, "store8"},   {hwvm_store8_end, "store8_end"},
      {hwvm_load32, "load32"},   {hwvm_load32_end, "load32_end"},
      {hwvm_exec, "exec"}};
  for (const auto& [at, name] : labels) {
    if (Addr(at) == ip) return Hex(ip) + "(" + name + ")";
  }
  return Hex(ip);
}

// A hit as a backend saw it.
struct Seen {
  pid_t tid = 0;
  uint64_t ip = 0;
  uint64_t address = 0;
  std::optional<uint64_t> value;  // ptrace: memory after the hit
};

// The address a backend reports for an access at `accessed`: arm64 ptrace
// gives the accessed address (si_addr); x86 ptrace and perf samples give the
// address of the register that matched.
uint64_t ReportedAddress(Backend b, const Cover& cover, uint64_t accessed) {
  if (b == Backend::kPtrace && kHostArch == Arch::kAarch64) return accessed;
  for (const CoverRegister& r : cover.registers) {
    if (accessed >= r.address && accessed - r.address < r.length) return r.address;
  }
  return ~uint64_t{0};
}

void Judge(const std::string& name, Backend backend, Script script, const Cover& cover, pid_t tid,
           const std::vector<Seen>& seen, const std::string& extra) {
  const std::vector<Expected> want = ExpectedHits(script);
  bool ok = seen.size() == want.size();
  std::string detail = std::to_string(cover.needed()) + " register(s), " +
                       std::to_string(seen.size()) + " hits (want " + std::to_string(want.size()) +
                       ")";
  for (size_t i = 0; i < seen.size(); ++i) {
    const Seen& s = seen[i];
    std::string mark;
    if (i < want.size()) {
      const Expected& e = want[i];
      if (s.tid != tid) mark += " TID!=" + std::to_string(tid);
      if (s.ip != e.ip) mark += " IP!=" + Hex(e.ip);
      const uint64_t addr = ReportedAddress(backend, cover, e.accessed);
      if (s.address != addr) mark += " ADDR!=" + Hex(addr);
      if (backend == Backend::kPtrace && e.value && s.value != e.value) {
        mark += " VALUE!=" + std::to_string(*e.value);
      }
    } else {
      mark = " UNEXPECTED";
    }
    ok = ok && mark.empty();
    detail += "; tid " + std::to_string(s.tid) + " ip " + Ip(s.ip) + " addr " + Hex(s.address);
    if (s.value) detail += " value " + std::to_string(*s.value);
    detail += mark;
  }
  Report(name, ok && extra.empty(), detail + extra);
}

// ---- ptrace ----------------------------------------------------------------

int PtraceTarget(void* arg) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 100;
  raise(SIGSTOP);
  RunScript(*static_cast<Script*>(arg));
  return 0;
}

uint64_t ProgramCounter(pid_t tid) {
  user_regs_struct regs{};
  iovec iov{&regs, sizeof regs};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) != 0) return 0;
#if defined(__x86_64__)
  return regs.rip;
#else
  return regs.pc;
#endif
}

std::optional<uint64_t> PeekWord32(pid_t tid, uint64_t address, uint64_t size) {
  const uint64_t word = address & ~uint64_t{7};
  errno = 0;
  const long v = ptrace(PTRACE_PEEKDATA, tid, reinterpret_cast<void*>(word), nullptr);
  if (errno != 0) return std::nullopt;
  const uint64_t shifted = static_cast<uint64_t>(v) >> (8 * (address - word));
  return size >= 8 ? shifted : shifted & ((uint64_t{1} << (8 * size)) - 1);
}

void PtraceCase(const std::string& name, Script script) {
  Script arg = script;
  auto cover = PlanCover(kHostArch, Watched(script), CoverMode::kExact, 4);
  if (!cover.ok()) return Report(name, false, cover.error().message);
  auto child = ChildProcess::Fork(PtraceTarget, &arg);
  if (!child.ok()) return Report(name, false, child.error().message);
  auto st = child->Wait(5s);
  if (!st.ok() || !WIFSTOPPED(*st)) return Report(name, false, "target did not stop");
  const pid_t tid = child->pid();
  PtraceDebugRegs regs(tid);
  for (unsigned i = 0; i < cover->needed(); ++i) {
    if (Status s = regs.Arm(i, cover->Spec(kHostArch, i)); !s.ok()) {
      return Report(name, false, "arm slot " + std::to_string(i) + ": " + s.error().message);
    }
  }
  const std::vector<Expected> want = ExpectedHits(script);
  std::vector<Seen> seen;
  int deliver = 0;
  int exit_code = -1;
  for (int stops = 0; stops < 32; ++stops) {
    if (ptrace(PTRACE_CONT, tid, nullptr, deliver) != 0) break;
    deliver = 0;
    st = child->Wait(5s);
    if (!st.ok()) return Report(name, false, "wait: " + st.error().message);
    if (WIFEXITED(*st) || WIFSIGNALED(*st)) {
      exit_code = WIFEXITED(*st) ? WEXITSTATUS(*st) : 128 + WTERMSIG(*st);
      break;
    }
    if (WSTOPSIG(*st) != SIGTRAP) {
      deliver = WSTOPSIG(*st);
      continue;
    }
    siginfo_t si{};
    ptrace(PTRACE_GETSIGINFO, tid, nullptr, &si);
    auto hit = regs.TakeHit(si);
    if (!hit.ok()) return Report(name, false, "take hit: " + hit.error().message);
    if (!hit->has_value()) {
      seen.push_back({tid, ProgramCounter(tid), reinterpret_cast<uint64_t>(si.si_addr), {}});
      continue;
    }
    Seen s{tid, ProgramCounter(tid), (*hit)->address, {}};
    auto pending = regs.StepOver(**hit);  // arm64: the access happens here
    if (!pending.ok()) return Report(name, false, "step-over: " + pending.error().message);
    deliver = *pending;
    const size_t i = seen.size();
    if (i < want.size() && want[i].value) {
      const uint64_t size = script == Script::kRegion12 ? 1 : 4;
      s.value = PeekWord32(tid, want[i].accessed, size);
    }
    seen.push_back(s);
  }
  Judge(name, Backend::kPtrace, script, *cover, tid, seen,
        exit_code == 0 ? "" : "; TARGET EXIT " + std::to_string(exit_code));
}

// ---- perf (sampling) ---------------------------------------------------------

struct PerfTargetArgs {
  int go_fd;
  Script script;
};

int PerfTargetBody(void* p) {
  auto* a = static_cast<PerfTargetArgs*>(p);
  char c;
  if (read(a->go_fd, &c, 1) != 1) return 100;
  RunScript(a->script);
  return 0;
}

void PerfCase(const std::string& name, Script script) {
  auto cover = PlanCover(kHostArch, Watched(script), CoverMode::kExact, 4);
  if (!cover.ok()) return Report(name, false, cover.error().message);
  int go[2];
  if (pipe(go) != 0) return Report(name, false, "pipe failed");
  PerfTargetArgs args{go[0], script};
  auto child = ChildProcess::Fork(PerfTargetBody, &args);
  close(go[0]);
  if (!child.ok()) {
    close(go[1]);
    return Report(name, false, child.error().message);
  }
  const pid_t tid = child->pid();
  PerfOptions o;
  o.sampling = true;
  std::vector<PerfBreakpoint> bps;
  std::vector<PerfRingBuffer> rings;
  for (unsigned i = 0; i < cover->needed(); ++i) {
    auto bp = PerfBreakpoint::Open(cover->Spec(kHostArch, i), PerfTarget::Thread(tid), o);
    if (!bp.ok()) {
      close(go[1]);
      return Report(name, false, "perf_event_open: " + bp.error().message);
    }
    auto ring = PerfRingBuffer::Map(bp->fd(), 4, BuildBreakpointAttr(bp->spec(), o).sample_type);
    if (!ring.ok()) {
      close(go[1]);
      return Report(name, false, "mmap: " + ring.error().message);
    }
    bps.push_back(std::move(*bp));
    rings.push_back(std::move(*ring));
  }
  const bool started = write(go[1], "g", 1) == 1;
  close(go[1]);
  auto st = child->Wait(10s);
  const bool exited = started && st.ok() && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
  // One ring per register: merge the samples in time order.
  std::vector<std::pair<uint64_t, Seen>> samples;
  bool corrupt = false;
  uint64_t lost = 0;
  for (PerfRingBuffer& ring : rings) {
    ParsedRing p = ring.Read();
    corrupt = corrupt || p.corrupt;
    for (const PerfRecord& r : p.records) {
      if (r.kind == PerfRecord::Kind::kLost) lost += r.lost.lost;
      if (r.kind != PerfRecord::Kind::kSample) continue;
      samples.push_back(
          {r.sample.time, Seen{static_cast<pid_t>(r.sample.tid), r.sample.ip, r.sample.addr, {}}});
    }
  }
  std::sort(samples.begin(), samples.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Seen> seen;
  for (auto& s : samples) seen.push_back(s.second);
  std::string extra;
  if (!exited) extra += "; TARGET DID NOT EXIT CLEANLY";
  if (corrupt) extra += "; RING CORRUPT";
  if (lost != 0) extra += "; LOST " + std::to_string(lost);
  Judge(name, Backend::kPerf, script, *cover, tid, seen, extra);
}

void MountPseudoFilesystems() {
  mkdir("/proc", 0555);
  mkdir("/sys", 0555);
  mount("proc", "/proc", "proc", 0, nullptr);
  mount("sysfs", "/sys", "sysfs", 0, nullptr);
}

}  // namespace

int main() {
  // The firmware leaves terminal escapes on the console's last line.
  std::printf("\n");
  if (getpid() == 1) MountPseudoFilesystems();
  HostCapabilities caps = DiscoverHost();
  std::string pools;
  for (const SlotPool& p : caps.pools) {
    pools += " " + std::to_string(p.slots) +
             (p.mixed() ? " mixed" : (p.types[0] == SlotType::kData ? " data" : " inst"));
  }
  Report("capabilities", caps.error.empty() && !caps.pools.empty(),
         "debug_arch " + std::to_string(caps.debug_arch) + ", pools" + pools +
             (caps.error.empty() ? "" : ", error: " + caps.error));

  // Emulation is slow: a generous budget (the daemon uses 400 ms natively).
  for (const SelfTestResult& r : RunSelfTest(3000ms)) {
    Report("selftest_" + std::string(BackendName(r.backend)), r.outcome == SelfTestOutcome::kFires,
           std::string(SelfTestOutcomeName(r.outcome)) + " (" + r.detail + ")");
  }

  PtraceCase("ptrace_write", Script::kWrite);
  PtraceCase("ptrace_read_write", Script::kReadWrite);
  PtraceCase("ptrace_execute", Script::kExecute);
  PtraceCase("ptrace_region12", Script::kRegion12);
  PerfCase("perf_write", Script::kWrite);
  PerfCase("perf_read_write", Script::kReadWrite);
  PerfCase("perf_execute", Script::kExecute);
  PerfCase("perf_region12", Script::kRegion12);

  std::printf("MATRIX DONE failures=%d\n", g_failures);
  std::fflush(stdout);
  if (getpid() == 1) {
    std::printf("GUEST DONE\n");
    std::fflush(stdout);
    sync();
    reboot(RB_POWER_OFF);
  }
  return g_failures == 0 ? 0 : 1;
}
