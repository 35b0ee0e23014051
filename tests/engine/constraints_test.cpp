// The kernel's semantics, case by case: the ideas of the kernel's KUnit
// suite (kernel/events/hw_breakpoint_test.c), weights, release, modify,
// refusal contents and separate pools.
#include "daemon/engine/constraints.h"

#include <gtest/gtest.h>

#include <vector>

namespace hwwatch::engine {
namespace {

using arch::SlotType;

Config X86(unsigned cpus, LockMode lock = LockMode::kSharded) {
  return Config{cpus, {arch::SlotPool{{SlotType::kData, SlotType::kInst}, 4}}, lock, 0};
}

class EngineTest : public ::testing::TestWithParam<LockMode> {
 protected:
  void Make(unsigned cpus = 2, unsigned slots = 4) {
    Config c = X86(cpus, GetParam());
    c.pools[0].slots = slots;
    e_ = std::make_unique<Engine>(c);
    slots_ = slots;
  }
  ReservationId Ok(Target t, unsigned w = 1) {
    auto a = e_->Reserve({t, SlotType::kData, w});
    EXPECT_TRUE(a) << (a ? "" : a.refusal().Explain());
    return a ? a.id() : 0;
  }
  bool Fits(Target t, unsigned w = 1) { return !e_->Probe({t, SlotType::kData, w}).has_value(); }
  // A refused reserve must also leave nothing behind.
  void Refused(Target t, unsigned w = 1) {
    auto before = e_->TakeSnapshot().reservations;
    auto a = e_->Reserve({t, SlotType::kData, w});
    EXPECT_FALSE(a);
    EXPECT_EQ(e_->TakeSnapshot().reservations, before);
  }
  std::vector<ReservationId> Fill(Target t, unsigned n) {
    std::vector<ReservationId> ids;
    for (unsigned i = 0; i < n; ++i) ids.push_back(Ok(t));
    return ids;
  }
  // "Full everywhere" in the kernel test's sense.
  void FullEverywhere(pid_t a, pid_t b) {
    Refused(Target::Task(a));
    Refused(Target::Task(b));
    Refused(Target::TaskOnCpu(a, 0));
    Refused(Target::TaskOnCpu(b, 0));
    Refused(Target::Cpu(0));
  }
  std::unique_ptr<Engine> e_;
  unsigned slots_ = 4;
  const pid_t kA = 1001, kB = 1002;
};

TEST_P(EngineTest, OneCpu) {
  Make();
  Fill(Target::Cpu(0), slots_);
  Refused(Target::Task(kA));
  Refused(Target::TaskOnCpu(kA, 0));
  Refused(Target::Cpu(0));
  // cpu1 is untouched.
  EXPECT_TRUE(Fits(Target::Cpu(1)));
  EXPECT_TRUE(Fits(Target::TaskOnCpu(kA, 1)));
}

TEST_P(EngineTest, ManyCpus) {
  Make(4);
  for (unsigned c = 0; c < 4; ++c) {
    Fill(Target::Cpu(c), slots_);
    Refused(Target::Cpu(c));
  }
}

TEST_P(EngineTest, OneTaskOnAllCpus) {
  Make();
  auto ids = Fill(Target::Task(kA), slots_);
  Refused(Target::Task(kA));
  Refused(Target::TaskOnCpu(kA, 0));
  Refused(Target::Cpu(0));
  // Another task is unaffected: tasks do not share slots with each other.
  EXPECT_TRUE(Fits(Target::Task(kB), slots_));
  ASSERT_TRUE(e_->Release(ids.back()));
  Ok(Target::Cpu(0));
  Refused(Target::Cpu(0));
}

TEST_P(EngineTest, TwoTasksOnAllCpus) {
  Make();
  auto a = Fill(Target::Task(kA), slots_);
  auto b = Fill(Target::Task(kB), slots_);
  FullEverywhere(kA, kB);
  // The CPU target sees the busiest task: B still holds all slots.
  e_->Release(a.back());
  Refused(Target::Cpu(0));
  Ok(Target::Task(kA));
}

TEST_P(EngineTest, OneTaskOnOneCpu) {
  Make();
  auto ids = Fill(Target::TaskOnCpu(kA, 0), slots_);
  Refused(Target::Task(kA));
  Refused(Target::TaskOnCpu(kA, 0));
  Refused(Target::Cpu(0));
  EXPECT_TRUE(Fits(Target::Cpu(1)));
  EXPECT_TRUE(Fits(Target::TaskOnCpu(kA, 1), slots_));
  e_->Release(ids.back());
  Ok(Target::Cpu(0));
  Refused(Target::Cpu(0));
}

TEST_P(EngineTest, OneTaskMixed) {
  Make(2, 4);
  auto on0 = Ok(Target::TaskOnCpu(kA, 0));
  auto all = Fill(Target::Task(kA), slots_ - 1);
  Refused(Target::Task(kA));
  Refused(Target::TaskOnCpu(kA, 0));
  Refused(Target::Cpu(0));
  e_->Release(on0);
  e_->Release(all.back());
  // The task now holds slots-2 on cpu0: exactly two CPU targets fit.
  Ok(Target::Cpu(0));
  Ok(Target::Cpu(0));
  Refused(Target::Cpu(0));
}

TEST_P(EngineTest, TwoTasksOnOneCpu) {
  Make();
  Fill(Target::TaskOnCpu(kA, 0), slots_);
  Fill(Target::TaskOnCpu(kB, 0), slots_);
  FullEverywhere(kA, kB);
  // cpu1 is free for CPU targets and both tasks.
  Fill(Target::Cpu(1), slots_);
  Refused(Target::Cpu(1));
}

TEST_P(EngineTest, TwoTasksOneCpuAndAllCpus) {
  Make();
  Fill(Target::TaskOnCpu(kA, 0), slots_);
  Fill(Target::Task(kB), slots_);
  FullEverywhere(kA, kB);
  Refused(Target::Cpu(1));  // B fills cpu1 too
}

TEST_P(EngineTest, TaskOnAllAndOneCpu) {
  Make(2, 4);
  Fill(Target::Task(kA), slots_ - 2);
  auto on0 = Ok(Target::TaskOnCpu(kA, 0));
  Ok(Target::Task(kA));
  Refused(Target::Task(kA));
  auto cpu1 = Ok(Target::Cpu(1));
  Refused(Target::Cpu(1));
  e_->Release(on0);
  // Still refused: cpu1 is full for the task.
  Refused(Target::Task(kA));
  e_->Release(cpu1);
  Ok(Target::Task(kA));
  Refused(Target::Task(kA));
}

TEST_P(EngineTest, WeightsAreAccounted) {
  Make();
  Ok(Target::Task(kA), 3);
  Refused(Target::Task(kA), 2);
  Ok(Target::Task(kA), 1);
  Refused(Target::Cpu(1));
  // A CPU target of weight 2 next to a task of weight 2.
  Ok(Target::Task(kB), 2);
  Make();
  Ok(Target::Task(kB), 2);
  Ok(Target::Cpu(1), 2);
  Refused(Target::Cpu(1), 1);
  Refused(Target::TaskOnCpu(kB, 1), 1);
  Ok(Target::TaskOnCpu(kB, 0), 2);
}

TEST_P(EngineTest, WeightLimits) {
  Make();
  auto zero = e_->Reserve({Target::Task(kA), SlotType::kData, 0});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.refusal().reason, Refusal::Reason::kInvalid);
  auto big = e_->Reserve({Target::Task(kA), SlotType::kData, 5});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.refusal().reason, Refusal::Reason::kInvalid);
  EXPECT_NE(big.refusal().Explain().find("between 1 and 4"), std::string::npos);
  auto cpu = e_->Reserve({Target::Cpu(2), SlotType::kData, 1});
  ASSERT_FALSE(cpu);
  EXPECT_NE(cpu.refusal().Explain().find("cpu 2 does not exist"), std::string::npos);
  auto tid = e_->Reserve({Target::Task(0), SlotType::kData, 1});
  EXPECT_FALSE(tid);
  Ok(Target::Cpu(1), 4);
}

TEST_P(EngineTest, ReleaseRestoresEverything) {
  Make(3);
  auto s0 = e_->TakeSnapshot();
  std::vector<ReservationId> ids = {Ok(Target::Task(kA), 2), Ok(Target::TaskOnCpu(kA, 1)),
                                    Ok(Target::Cpu(2), 2), Ok(Target::TaskOnCpu(kB, 0), 3)};
  for (auto id : ids) EXPECT_TRUE(e_->Release(id));
  for (auto id : ids) EXPECT_FALSE(e_->Release(id)) << "released twice";
  EXPECT_FALSE(e_->Release(999999));
  auto s1 = e_->TakeSnapshot();
  EXPECT_EQ(s1.reservations, 0u);
  EXPECT_TRUE(s1.tasks.empty());
  ASSERT_EQ(s1.cpus.size(), s0.cpus.size());
  for (size_t i = 0; i < s1.cpus.size(); ++i) {
    EXPECT_EQ(s1.cpus[i].cpu_pinned, 0u);
    EXPECT_EQ(s1.cpus[i].max_task_pinned, 0u);
    EXPECT_EQ(s1.cpus[i].free, 4u);
    EXPECT_EQ(s1.cpus[i].tasks_by_slots, std::vector<unsigned>(4, 0));
  }
  Fill(Target::Cpu(0), 4);
}

TEST_P(EngineTest, ModifyIsAdmittedAsIfTheOldWereGone) {
  Make();
  auto ids = Fill(Target::Task(kA), slots_);
  // Full, yet the task can still move/grow a watch within its own slots.
  EXPECT_FALSE(e_->Modify(ids[0], {Target::Task(kA), SlotType::kData, 1}).has_value());
  e_->Release(ids[1]);
  EXPECT_FALSE(e_->Modify(ids[0], {Target::Task(kA), SlotType::kData, 2}).has_value());
  Refused(Target::Task(kA));
  // Too big: refused, and the old reservation (weight 2) is untouched.
  auto no = e_->Modify(ids[0], {Target::Task(kA), SlotType::kData, 3});
  ASSERT_TRUE(no.has_value());
  EXPECT_EQ(no->reason, Refusal::Reason::kTaskFull);
  EXPECT_EQ(no->task_pinned, 2u);  // the other two, without the old one
  auto snap = e_->TakeSnapshot();
  ASSERT_EQ(snap.tasks.size(), 1u);
  EXPECT_EQ(snap.tasks[0].all_cpus, 4u);
  EXPECT_EQ(snap.reservations, 3u);
  // Modify keeps the target; unknown ids are refused.
  EXPECT_TRUE(e_->Modify(ids[0], {Target::Task(kB), SlotType::kData, 1}).has_value());
  EXPECT_TRUE(e_->Modify(424242, {Target::Task(kA), SlotType::kData, 1}).has_value());
  // After a modify, release frees the new weight.
  EXPECT_TRUE(e_->Release(ids[0]));
  EXPECT_EQ(e_->TakeSnapshot().tasks[0].all_cpus, 2u);
}

TEST_P(EngineTest, RefusalNamesTheCpuAndTheCounts) {
  Make(4);
  Ok(Target::Cpu(2), 3);
  Ok(Target::Task(kA), 1);
  auto a = e_->Reserve({Target::Task(kA), SlotType::kData, 1});
  ASSERT_FALSE(a);
  const Refusal& r = a.refusal();
  EXPECT_EQ(r.cpu, 2u);
  EXPECT_EQ(r.tid, kA);
  EXPECT_EQ(r.cpu_pinned, 3u);
  EXPECT_EQ(r.task_pinned, 1u);
  EXPECT_EQ(r.weight, 1u);
  EXPECT_EQ(r.slots, 4u);
  EXPECT_EQ(r.reason, Refusal::Reason::kCpuFull);
  EXPECT_NE(r.Explain().find("cpu 2"), std::string::npos) << r.Explain();
  EXPECT_NE(r.Explain().find("3 held by CPU targets"), std::string::npos) << r.Explain();

  auto c = e_->Reserve({Target::Cpu(2), SlotType::kData, 1});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.refusal().cpu, 2u);
  EXPECT_FALSE(c.refusal().tid.has_value());
  EXPECT_EQ(c.refusal().cpu_pinned, 3u);
  EXPECT_EQ(c.refusal().task_pinned, 1u);  // the busiest task
  EXPECT_NE(c.refusal().Explain().find("busiest task"), std::string::npos);

  // A task-on-cpu refusal names its own CPU and counts.
  Ok(Target::TaskOnCpu(kB, 3), 4);
  auto t = e_->Reserve({Target::TaskOnCpu(kB, 3), SlotType::kData, 1});
  ASSERT_FALSE(t);
  EXPECT_EQ(t.refusal().cpu, 3u);
  EXPECT_EQ(t.refusal().task_pinned, 4u);
  EXPECT_EQ(t.refusal().reason, Refusal::Reason::kTaskFull);
}

TEST_P(EngineTest, SnapshotShowsHistogramsAndTasks) {
  Make(2);
  Ok(Target::Task(kA), 2);
  Ok(Target::TaskOnCpu(kA, 1));
  Ok(Target::Task(kB));
  Ok(Target::Cpu(0));
  auto s = e_->TakeSnapshot();
  ASSERT_EQ(s.cpus.size(), 2u);
  // cpu0: A holds 2, B holds 1; cpu1: A holds 3, B holds 1.
  EXPECT_EQ(s.cpus[0].tasks_by_slots, (std::vector<unsigned>{1, 1, 0, 0}));
  EXPECT_EQ(s.cpus[1].tasks_by_slots, (std::vector<unsigned>{1, 0, 1, 0}));
  EXPECT_EQ(s.cpus[0].cpu_pinned, 1u);
  EXPECT_EQ(s.cpus[0].max_task_pinned, 2u);
  EXPECT_EQ(s.cpus[0].free, 1u);
  EXPECT_EQ(s.cpus[1].free, 1u);
  ASSERT_EQ(s.tasks.size(), 2u);
  EXPECT_EQ(s.tasks[0].tid, kA);
  EXPECT_EQ(s.tasks[0].all_cpus, 2u);
  EXPECT_EQ(s.tasks[0].per_cpu, (std::vector<std::pair<unsigned, unsigned>>{{1, 1}}));
  EXPECT_EQ(s.reservations, 4u);
}

TEST_P(EngineTest, SeparatePoolsDoNotShare) {
  Config c{2,
           {arch::SlotPool{{SlotType::kInst}, 6}, arch::SlotPool{{SlotType::kData}, 4}},
           GetParam(),
           0};
  Engine e(c);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(e.Reserve({Target::Task(kA), SlotType::kData, 1}));
  EXPECT_FALSE(e.Reserve({Target::Task(kA), SlotType::kData, 1}));
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(e.Reserve({Target::Task(kA), SlotType::kInst, 1}));
  EXPECT_FALSE(e.Reserve({Target::Cpu(0), SlotType::kInst, 1}));
  EXPECT_FALSE(e.Reserve({Target::Cpu(0), SlotType::kData, 1}));
  EXPECT_TRUE(e.Reserve({Target::Task(kB), SlotType::kInst, 6}));
  auto s = e.TakeSnapshot();
  EXPECT_EQ(s.cpus.size(), 4u);
  EXPECT_EQ(s.tasks.size(), 3u);  // A in both pools, B in one
}

TEST_P(EngineTest, MixedPoolSharesBetweenTypes) {
  Make();
  Ok(Target::Task(kA), 2);
  ASSERT_TRUE(e_->Reserve({Target::Task(kA), SlotType::kInst, 2}));
  EXPECT_FALSE(e_->Reserve({Target::Task(kA), SlotType::kInst, 1}));
  EXPECT_FALSE(e_->Reserve({Target::Task(kA), SlotType::kData, 1}));
}

INSTANTIATE_TEST_SUITE_P(Locking, EngineTest,
                         ::testing::Values(LockMode::kSharded, LockMode::kGlobal),
                         [](const auto& info) { return std::string(LockModeName(info.param)); });

TEST(LockMode, NamesRoundTrip) {
  for (LockMode m : {LockMode::kSharded, LockMode::kGlobal, LockMode::kNone}) {
    EXPECT_EQ(ParseLockMode(LockModeName(m)), m);
  }
  EXPECT_FALSE(ParseLockMode("fast"));
}

TEST(LockMode, NoneAdmitsEverything) {
  Engine e(X86(1, LockMode::kNone));
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(e.Reserve({Target::Cpu(0), SlotType::kData, 4}));
}

}  // namespace
}  // namespace hwwatch::engine
