// The ptrace backend against the live kernel: programming, read-back,
// ENOSPC through the kernel's slot accounting, hit identification (DR6), and
// that every child is reaped. Hits never arrive on this host's hypervisor;
// where they do, the test checks they are attributed to the right slot.
#include "arch/ptrace_debugreg.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <iostream>
#include <vector>

#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "arch/x86_debugreg.h"

namespace hwwatch::arch {
namespace {

using namespace std::chrono_literals;

constexpr int kWrites = 3;
alignas(64) volatile uint64_t g_watched[4];

int TracedWriter(void*) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 100;
  raise(SIGSTOP);
  for (int i = 1; i <= kWrites; ++i) g_watched[0] = i;
  return g_watched[0] == kWrites ? 0 : 101;
}

uint64_t Addr(int i) { return reinterpret_cast<uint64_t>(&g_watched[i]); }

// Forks TracedWriter and waits for its SIGSTOP.
ChildProcess StoppedChild() {
  auto child = ChildProcess::Fork(TracedWriter, nullptr);
  EXPECT_TRUE(child.ok()) << child.error().message;
  auto st = child->Wait(5s);
  EXPECT_TRUE(st.ok()) << st.error().message;
  EXPECT_TRUE(WIFSTOPPED(*st));
  EXPECT_EQ(WSTOPSIG(*st), SIGSTOP);
  return std::move(*child);
}

TEST(ChildProcessTest, WaitTimesOutAndKillReaps) {
  auto child = ChildProcess::Fork(
      [](void*) {
        pause();
        return 0;
      },
      nullptr);
  ASSERT_TRUE(child.ok());
  const pid_t pid = child->pid();
  auto st = child->Wait(20ms);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ETIMEDOUT);
  child->KillAndReap();
  EXPECT_TRUE(child->reaped());
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);  // nothing left to reap: no zombie
}

TEST(ChildProcessTest, DestructorReapsAndExitStatusIsSeen) {
  pid_t pid = -1;
  {
    auto child = ChildProcess::Fork([](void*) { return 7; }, nullptr);
    ASSERT_TRUE(child.ok());
    pid = child->pid();
    auto st = child->Wait(5s);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE(WIFEXITED(*st));
    EXPECT_EQ(WEXITSTATUS(*st), 7);
    EXPECT_TRUE(child->reaped());
  }
  {
    auto child = ChildProcess::Fork(
        [](void*) {
          pause();
          return 0;
        },
        nullptr);
    ASSERT_TRUE(child.ok());
    pid = child->pid();
  }  // destructor kills and reaps
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(PtraceDebugRegsTest, ArmReadsBackAndDisarms) {
  ChildProcess child = StoppedChild();
  PtraceDebugRegs regs(child.pid());
  auto count = regs.SlotCount(SlotType::kData);
  ASSERT_TRUE(count.ok()) << count.error().message;
  EXPECT_GE(*count, 2u);

  ASSERT_TRUE(regs.Arm(0, {Addr(0), 8, Access::kWrite}).ok());
  ASSERT_TRUE(regs.Arm(1, {Addr(2), 4, Access::kReadWrite}).ok());
  auto s0 = regs.ReadSlot(0, SlotType::kData);
  ASSERT_TRUE(s0.ok()) << s0.error().message;
  EXPECT_TRUE(s0->enabled);
  if constexpr (kHostArch == Arch::kX86_64) {
    EXPECT_EQ(s0->address, Addr(0));
    // DR7 as the kernel reconstructs it: slot 0 write 8 bytes, slot 1 rw 4.
    x86::Dr7Slot d0 = x86::Dr7GetSlot(s0->control, 0);
    EXPECT_EQ(d0.condition, x86::Condition::kWrite);
    EXPECT_EQ(d0.length, 8u);
    x86::Dr7Slot d1 = x86::Dr7GetSlot(s0->control, 1);
    EXPECT_TRUE(d1.enabled());
    EXPECT_EQ(d1.condition, x86::Condition::kReadWrite);
    EXPECT_EQ(d1.length, 4u);
  } else {
    EXPECT_EQ(s0->address, Addr(0) & ~7ull);
  }
  // Move slot 0 in place.
  ASSERT_TRUE(regs.Arm(0, {Addr(1), 2, Access::kWrite}).ok());
  auto moved = regs.ReadSlot(0, SlotType::kData);
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE(moved->enabled);
  if constexpr (kHostArch == Arch::kX86_64) {
    EXPECT_EQ(moved->address, Addr(1));
    EXPECT_EQ(x86::Dr7GetSlot(moved->control, 0).length, 2u);
  }
  ASSERT_TRUE(regs.armed(0, SlotType::kData).has_value());
  EXPECT_EQ(regs.armed(0, SlotType::kData)->address, Addr(1));

  ASSERT_TRUE(regs.DisarmAll().ok());
  auto off = regs.ReadSlot(0, SlotType::kData);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled);
  EXPECT_FALSE(regs.ReadSlot(1, SlotType::kData)->enabled);
  EXPECT_FALSE(regs.armed(1, SlotType::kData).has_value());
}

TEST(PtraceDebugRegsTest, RefusesWhatTheHardwareCannotDo) {
  ChildProcess child = StoppedChild();
  PtraceDebugRegs regs(child.pid());
  EXPECT_EQ(regs.Arm(16, {Addr(0), 8, Access::kWrite}).error().code, EINVAL);
  if constexpr (kHostArch == Arch::kX86_64) {
    EXPECT_EQ(regs.Arm(4, {Addr(0), 8, Access::kWrite}).error().code, EINVAL);
    EXPECT_EQ(regs.Arm(0, {Addr(0) + 2, 4, Access::kWrite}).error().code, EINVAL);
    EXPECT_EQ(regs.Arm(0, {Addr(0), 4, Access::kRead}).error().code, EINVAL);
  }
  // A failed Arm leaves nothing armed.
  EXPECT_FALSE(regs.armed(0, SlotType::kData).has_value());
}

// Four per-CPU breakpoints on cpu 0 fill it; a task that may run on cpu 0
// cannot get a register through ptrace either.
TEST(PtraceDebugRegsTest, EnospcWhenTheCpuIsFull) {
  ChildProcess child = StoppedChild();
  std::vector<PerfBreakpoint> fill;
  for (int i = 0; i < 16; ++i) {
    auto bp = PerfBreakpoint::Open({Addr(3), 8, Access::kWrite}, PerfTarget::Cpu(0));
    if (!bp.ok()) {
      ASSERT_EQ(bp.error().code, ENOSPC) << bp.error().message;
      break;
    }
    fill.push_back(std::move(*bp));
  }
  PtraceDebugRegs regs(child.pid());
  Status s = regs.Arm(0, {Addr(0), 8, Access::kWrite});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ENOSPC) << s.error().message;
  EXPECT_FALSE(regs.armed(0, SlotType::kData).has_value());
  fill.pop_back();
  EXPECT_TRUE(regs.Arm(0, {Addr(0), 8, Access::kWrite}).ok());
}

#if defined(__x86_64__)
TEST(PtraceDebugRegsTest, TakeHitReadsAndClearsDr6) {
  ChildProcess child = StoppedChild();
  PtraceDebugRegs regs(child.pid());
  ASSERT_TRUE(regs.Arm(1, {Addr(1), 8, Access::kWrite}).ok());
  // What the kernel leaves in DR6 after slot 1 fired.
  ASSERT_TRUE(x86::PokeDebugReg(child.pid(), 6, 0xffff0ff2).ok());
  siginfo_t si{};
  auto hit = regs.TakeHit(si);
  ASSERT_TRUE(hit.ok()) << hit.error().message;
  ASSERT_TRUE(hit->has_value());
  EXPECT_EQ((*hit)->slot, 1u);
  EXPECT_EQ((*hit)->address, Addr(1));
  EXPECT_EQ((*hit)->dr6, 0xffff0ff2u);
  EXPECT_EQ(*x86::PeekDebugReg(child.pid(), 6), 0u);  // cleared
  // A B bit of a slot nobody armed is not ours.
  ASSERT_TRUE(x86::PokeDebugReg(child.pid(), 6, 0xffff0ff4).ok());
  auto stray = regs.TakeHit(si);
  ASSERT_TRUE(stray.ok());
  EXPECT_FALSE(stray->has_value());
}
#endif

// Arms a write watch, lets the child write, and accounts for every stop.
// On this host no SIGTRAP arrives (0 hits); where debug exceptions work,
// each of the writes must be attributed to slot 0.
TEST(PtraceDebugRegsTest, RunsTheTraceeToExitWithTheWatchArmed) {
  ChildProcess child = StoppedChild();
  PtraceDebugRegs regs(child.pid());
  ASSERT_TRUE(regs.Arm(0, {Addr(0), 8, Access::kWrite}).ok());
  ASSERT_EQ(ptrace(PTRACE_CONT, child.pid(), nullptr, nullptr), 0);
  int hits = 0;
  for (int stops = 0; stops < 2 * kWrites + 2; ++stops) {
    auto st = child.Wait(5s);
    ASSERT_TRUE(st.ok()) << st.error().message;
    if (WIFEXITED(*st)) {
      EXPECT_EQ(WEXITSTATUS(*st), 0);
      break;
    }
    ASSERT_TRUE(WIFSTOPPED(*st));
    ASSERT_EQ(WSTOPSIG(*st), SIGTRAP);
    siginfo_t si{};
    ASSERT_EQ(ptrace(PTRACE_GETSIGINFO, child.pid(), nullptr, &si), 0);
    auto hit = regs.TakeHit(si);
    ASSERT_TRUE(hit.ok());
    ASSERT_TRUE(hit->has_value());
    EXPECT_EQ((*hit)->slot, 0u);
    ++hits;
    auto pending = regs.StepOver(**hit);
    ASSERT_TRUE(pending.ok()) << pending.error().message;
    EXPECT_EQ(*pending, 0);
    // After the hit (and on arm64 the step-over) the new value is in memory.
    errno = 0;
    long value = ptrace(PTRACE_PEEKDATA, child.pid(), reinterpret_cast<void*>(Addr(0)), nullptr);
    ASSERT_EQ(errno, 0);
    EXPECT_EQ(value, hits);
    std::cout << "hit " << hits << ": slot " << (*hit)->slot << " address 0x" << std::hex
              << (*hit)->address << " dr6 0x" << (*hit)->dr6 << std::dec << " value " << value
              << "\n";
    ASSERT_EQ(ptrace(PTRACE_CONT, child.pid(), nullptr, nullptr), 0);
  }
  EXPECT_TRUE(child.reaped());
  std::cout << "ptrace write watch: " << hits << " SIGTRAP stops for " << kWrites << " writes\n";
  EXPECT_TRUE(hits == 0 || hits == kWrites) << hits;
}

__attribute__((noinline)) int Called(int x) {
  asm volatile("" ::: "memory");
  return x + 1;
}

int TracedCaller(void*) {
  if (ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) return 100;
  raise(SIGSTOP);
  int v = 0;
  for (int i = 0; i < kWrites; ++i) v = Called(v);
  return v == kWrites ? 0 : 101;
}

// An execute breakpoint on a function the child calls: every call stops
// (x86 at the instruction with RF set by the kernel so it resumes; arm64
// through the step-over), and the child still computes the right result.
TEST(PtraceDebugRegsTest, ExecuteBreakpointStopsAtEachCall) {
  auto forked = ChildProcess::Fork(TracedCaller, nullptr);
  ASSERT_TRUE(forked.ok());
  ChildProcess child = std::move(*forked);
  auto st = child.Wait(5s);
  ASSERT_TRUE(st.ok() && WIFSTOPPED(*st));
  const uint64_t fn = reinterpret_cast<uint64_t>(&Called);
  PtraceDebugRegs regs(child.pid());
  ASSERT_TRUE(regs.Arm(0, {fn, 1, Access::kExecute}).ok());
  ASSERT_TRUE(regs.armed(0, SlotType::kInst).has_value());
  int hits = 0;
  ASSERT_EQ(ptrace(PTRACE_CONT, child.pid(), nullptr, nullptr), 0);
  for (int stops = 0; stops < 2 * kWrites + 2; ++stops) {
    st = child.Wait(5s);
    ASSERT_TRUE(st.ok()) << st.error().message;
    if (WIFEXITED(*st)) {
      EXPECT_EQ(WEXITSTATUS(*st), 0);
      break;
    }
    ASSERT_TRUE(WIFSTOPPED(*st));
    ASSERT_EQ(WSTOPSIG(*st), SIGTRAP);
    siginfo_t si{};
    ASSERT_EQ(ptrace(PTRACE_GETSIGINFO, child.pid(), nullptr, &si), 0);
    auto hit = regs.TakeHit(si);
    ASSERT_TRUE(hit.ok() && hit->has_value());
    EXPECT_EQ((*hit)->type, SlotType::kInst);
    EXPECT_EQ((*hit)->address, fn);
#if defined(__x86_64__)
    user_regs_struct r{};
    ASSERT_EQ(ptrace(PTRACE_GETREGS, child.pid(), nullptr, &r), 0);
    EXPECT_EQ(r.rip, fn);  // a fault: stopped before the instruction runs
#endif
    ++hits;
    ASSERT_TRUE(regs.StepOver(**hit).ok());
    ASSERT_EQ(ptrace(PTRACE_CONT, child.pid(), nullptr, nullptr), 0);
  }
  EXPECT_TRUE(child.reaped());
  std::cout << "ptrace execute breakpoint: " << hits << " stops for " << kWrites << " calls\n";
  EXPECT_TRUE(hits == 0 || hits == kWrites) << hits;
}

// Where the stopped tracee is (in raise()), as PTRACE_GETREGS says on x86;
// a thread this process does not trace has none to read.
TEST(PtraceDebugRegsTest, ReadsTheInstructionPointerOfAStoppedTracee) {
  ChildProcess child = StoppedChild();
  auto ip = ReadInstructionPointer(child.pid());
  ASSERT_TRUE(ip.ok()) << ip.error().message;
  EXPECT_NE(*ip, 0u);
#if defined(__x86_64__)
  user_regs_struct r{};
  ASSERT_EQ(ptrace(PTRACE_GETREGS, child.pid(), nullptr, &r), 0);
  EXPECT_EQ(*ip, r.rip);
#endif
  auto self = ReadInstructionPointer(getpid());
  ASSERT_FALSE(self.ok());
  EXPECT_EQ(self.error().code, ESRCH);
}

}  // namespace
}  // namespace hwwatch::arch
