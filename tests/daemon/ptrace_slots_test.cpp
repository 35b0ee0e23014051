// The ptrace slot bank against a real (pure) constraint engine: indices
// picked and refused, registers the kernel still holds reused first, and
// the engine's slots given back when a thread ends.
#include "daemon/ptrace_slots.h"

#include <gtest/gtest.h>

namespace hwwatch::daemon {
namespace {

class Bank : public ::testing::Test {
 protected:
  engine::Snapshot::Cpu Cpu0() { return engine_.TakeSnapshot().cpus.at(0); }
  // Slots the engine holds for task `tid` on cpu 0.
  unsigned Held(pid_t tid) {
    for (const auto& t : engine_.TakeSnapshot().tasks) {
      if (t.tid == tid) return t.all_cpus;
    }
    return 0;
  }
  const arch::HostCapabilities caps_ = arch::X86_64Capabilities(2);
  engine::Engine engine_{engine::Config{2, caps_.pools, engine::LockMode::kSharded, 0}};
  PtraceSlotBank bank_{caps_, engine_};
};

TEST_F(Bank, PicksFreeIndicesInOrderAndRefusesAFifth) {
  auto a = bank_.Take(100, arch::SlotType::kData, 3, std::nullopt);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(*a, (std::vector<unsigned>{0, 1, 2}));
  auto b = bank_.Take(100, arch::SlotType::kInst, 1, std::nullopt);  // x86: one mixed bank
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(*b, (std::vector<unsigned>{3}));
  EXPECT_EQ(Held(100), 4u);
  auto c = bank_.Take(100, arch::SlotType::kData, 1, std::nullopt);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Code::kResourceExhausted);
  ASSERT_TRUE(c.error().refusal.has_value());
  EXPECT_EQ(c.error().refusal->reason, Refusal::Reason::kTaskFull);
  EXPECT_EQ(c.error().refusal->tid, 100);
  // Another thread has its own registers.
  EXPECT_TRUE(bank_.Take(200, arch::SlotType::kData, 4, std::nullopt));
}

TEST_F(Bank, AChosenSlotComesFirstAndMustExistAndBeFree) {
  auto a = bank_.Take(100, arch::SlotType::kData, 2, 2u);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(*a, (std::vector<unsigned>{2, 0}));
  auto busy = bank_.Take(100, arch::SlotType::kData, 1, 2u);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, Code::kFailedPrecondition);
  auto none = bank_.Take(100, arch::SlotType::kData, 1, 4u);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kInvalidArgument);
  auto exact = bank_.TakeExactly(100, arch::SlotType::kData, {0});
  ASSERT_FALSE(exact);
  EXPECT_EQ(exact.error().code, Code::kFailedPrecondition);
}

TEST_F(Bank, RegistersTheKernelStillHoldsAreReusedWithoutANewSlot) {
  auto a = bank_.Take(100, arch::SlotType::kData, 2, std::nullopt);
  ASSERT_TRUE(a);
  bank_.Put(100, arch::SlotType::kData, *a);
  // Still registered in the kernel, so still accounted.
  EXPECT_EQ(Held(100), 2u);
  EXPECT_EQ(bank_.Idle(), (std::vector<pid_t>{100}));
  auto b = bank_.Take(100, arch::SlotType::kData, 3, std::nullopt);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, (std::vector<unsigned>{0, 1, 2}));  // the registered two first
  EXPECT_EQ(Held(100), 3u);                         // one new slot, not three
  EXPECT_TRUE(bank_.Idle().empty());
}

TEST_F(Bank, ARefusedTakeGivesBackWhatItAdmitted) {
  // A CPU target fills cpu 0 up to one free slot: the task can admit one
  // more register there, not two.
  auto cpu = engine_.Reserve({engine::Target::Cpu(0), arch::SlotType::kData, 3});
  ASSERT_TRUE(cpu);
  auto two = bank_.Take(100, arch::SlotType::kData, 2, std::nullopt);
  ASSERT_FALSE(two);
  EXPECT_EQ(two.error().refusal->reason, Refusal::Reason::kCpuFull);
  EXPECT_EQ(Held(100), 0u);
  EXPECT_TRUE(bank_.Take(100, arch::SlotType::kData, 1, std::nullopt));
}

TEST_F(Bank, ForgetGivesTheEngineItsSlotsBack) {
  auto a = bank_.Take(100, arch::SlotType::kData, 4, std::nullopt);
  ASSERT_TRUE(a);
  EXPECT_EQ(Cpu0().free, 0u);
  bank_.Forget(100);
  EXPECT_EQ(Held(100), 0u);
  EXPECT_EQ(Cpu0().free, 4u);
  EXPECT_TRUE(bank_.Take(100, arch::SlotType::kData, 4, std::nullopt));
}

}  // namespace
}  // namespace hwwatch::daemon
