// 100k random operations per locking mode, checked step by step against
// the simple reference model, and the engine's snapshot against the
// model's recomputed counts.
#include <gtest/gtest.h>

#include <random>

#include "tests/engine/reference_model.h"

namespace hwwatch::engine {
namespace {

using testing::ReferenceModel;

struct Shape {
  const char* name;
  unsigned cpus;
  std::vector<arch::SlotPool> pools;
};

void CompareSnapshots(Engine& e, const ReferenceModel& m, uint64_t step) {
  Snapshot s = e.TakeSnapshot();
  ASSERT_EQ(s.reservations, m.live().size()) << "step " << step;
  for (const Snapshot::Cpu& c : s.cpus) {
    ASSERT_EQ(c.cpu_pinned, m.CpuPinned(c.pool, c.cpu)) << "step " << step << " cpu " << c.cpu;
    ASSERT_EQ(c.max_task_pinned, m.MaxTaskPinned(c.pool, c.cpu)) << "step " << step;
    std::vector<unsigned> hist(c.slots, 0);
    for (pid_t t : m.Tasks()) {
      unsigned n = m.TaskPinned(c.pool, t, c.cpu);
      if (n) hist[n - 1]++;
    }
    ASSERT_EQ(c.tasks_by_slots, hist) << "step " << step << " cpu " << c.cpu;
  }
}

void RunAgainstModel(const Shape& shape, LockMode lock, uint64_t ops, uint32_t seed) {
  Config cfg{shape.cpus, shape.pools, lock, 0};
  Engine e(cfg);
  ReferenceModel m(cfg);
  std::mt19937 rng(seed);
  auto pick = [&](unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(rng); };
  const unsigned ntasks = 6;
  auto random_type = [&] {
    return shape.pools.size() == 1 || pick(2) ? arch::SlotType::kData : arch::SlotType::kInst;
  };
  auto random_request = [&] {
    Request r;
    r.type = random_type();
    const unsigned slots = shape.pools[m.Pool(r.type)].slots;
    r.weight = 1 + (pick(4) == 0 ? pick(slots) : 0);
    switch (pick(3)) {
      case 0:
        r.target = Target::Task(100 + pick(ntasks));
        break;
      case 1:
        r.target = Target::TaskOnCpu(100 + pick(ntasks), pick(shape.cpus));
        break;
      default:
        r.target = Target::Cpu(pick(shape.cpus));
        break;
    }
    return r;
  };
  std::vector<ReservationId> live;
  uint64_t admitted = 0, refused = 0;
  for (uint64_t step = 0; step < ops; ++step) {
    const unsigned op = pick(10);
    if (op < 5 || live.empty()) {
      Request r = random_request();
      const bool fits = m.Fits(r);
      auto probe = e.Probe(r);
      ASSERT_EQ(!probe.has_value(), fits) << "probe, step " << step;
      Admission a = e.Reserve(r);
      ASSERT_EQ(a.ok(), fits) << "reserve, step " << step;
      if (a) {
        m.Reserve(a.id(), r);
        live.push_back(a.id());
        ++admitted;
      } else {
        ++refused;
        // The refusal's counts are the model's, at the CPU it names.
        const Refusal& no = a.refusal();
        ASSERT_TRUE(no.cpu.has_value());
        const unsigned p = m.Pool(r.type);
        ASSERT_EQ(no.cpu_pinned, m.CpuPinned(p, *no.cpu)) << "step " << step;
        const unsigned other = r.target.is_task() ? m.TaskPinned(p, r.target.tid, *no.cpu)
                                                  : m.MaxTaskPinned(p, *no.cpu);
        ASSERT_EQ(no.task_pinned, other) << "step " << step;
        ASSERT_GT(no.cpu_pinned + no.task_pinned + no.weight, no.slots);
      }
    } else if (op < 8) {
      const unsigned i = pick(live.size());
      ASSERT_TRUE(e.Release(live[i]));
      ASSERT_TRUE(m.Release(live[i]));
      ASSERT_FALSE(e.Release(live[i]));
      live[i] = live.back();
      live.pop_back();
    } else {
      const ReservationId id = live[pick(live.size())];
      Request r = random_request();
      r.target = m.live().at(id).target;
      const bool ok = m.Modify(id, r);
      ASSERT_EQ(!e.Modify(id, r).has_value(), ok) << "modify, step " << step;
    }
    if (step % 997 == 0) CompareSnapshots(e, m, step);
  }
  CompareSnapshots(e, m, ops);
  // Both outcomes were exercised.
  EXPECT_GT(admitted, ops / 10);
  EXPECT_GT(refused, ops / 50);
}

class ModelTest : public ::testing::TestWithParam<LockMode> {};

TEST_P(ModelTest, X86MixedPoolTwoCpus) {
  RunAgainstModel({"x86", 2, {arch::SlotPool{{arch::SlotType::kData, arch::SlotType::kInst}, 4}}},
                  GetParam(), 100000, 1);
}

TEST_P(ModelTest, Arm64SeparatePoolsFourCpus) {
  RunAgainstModel(
      {"arm64",
       4,
       {arch::SlotPool{{arch::SlotType::kInst}, 6}, arch::SlotPool{{arch::SlotType::kData}, 4}}},
      GetParam(), 100000, 2);
}

TEST_P(ModelTest, OneCpuOneSlot) {
  RunAgainstModel({"tiny", 1, {arch::SlotPool{{arch::SlotType::kData, arch::SlotType::kInst}, 1}}},
                  GetParam(), 20000, 3);
}

INSTANTIATE_TEST_SUITE_P(Locking, ModelTest,
                         ::testing::Values(LockMode::kSharded, LockMode::kGlobal),
                         [](const auto& info) { return std::string(LockModeName(info.param)); });

}  // namespace
}  // namespace hwwatch::engine
