// Many threads on shared and disjoint tasks plus CPU targets, while a
// checker takes snapshots: no CPU is ever over-committed and no reservation
// is lost. Run under ThreadSanitizer in the TSan build.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "tests/engine/reference_model.h"

namespace hwwatch::engine {
namespace {

struct Held {
  ReservationId id;
  Request r;
};

void Stress(LockMode lock, unsigned cpus) {
  Config cfg{cpus, {arch::SlotPool{{arch::SlotType::kData, arch::SlotType::kInst}, 4}}, lock, 0};
  Engine e(cfg);
  constexpr unsigned kThreads = 8;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr unsigned kOps = 1500;
#else
  constexpr unsigned kOps = 40000;
#endif
  std::atomic<bool> done{false};
  std::atomic<uint64_t> snapshots{0};
  std::atomic<int> overcommitted{0};
  std::vector<std::vector<Held>> held(kThreads);

  std::thread checker([&] {
    while (!done.load()) {
      Snapshot s = e.TakeSnapshot();
      for (const auto& c : s.cpus) {
        if (c.cpu_pinned + c.max_task_pinned > c.slots) overcommitted.fetch_add(1);
      }
      snapshots.fetch_add(1);
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 rng(t + 1);
      auto pick = [&](unsigned n) {
        return std::uniform_int_distribution<unsigned>(0, n - 1)(rng);
      };
      auto& mine = held[t];
      for (unsigned i = 0; i < kOps; ++i) {
        if (mine.size() > 6 || (!mine.empty() && pick(2))) {
          const unsigned k = pick(mine.size());
          if (pick(4) == 0) {
            Request r = mine[k].r;
            r.weight = 1 + pick(2);
            if (!e.Modify(mine[k].id, r)) mine[k].r = r;
          } else {
            EXPECT_TRUE(e.Release(mine[k].id));
            mine[k] = mine.back();
            mine.pop_back();
          }
          continue;
        }
        Request r;
        r.weight = 1 + (pick(5) == 0);
        const pid_t shared_tid = 1 + pick(3);           // every thread uses these
        const pid_t own_tid = 1000 + t * 10 + pick(3);  // only this thread
        switch (pick(5)) {
          case 0:
            r.target = Target::Task(shared_tid);
            break;
          case 1:
            r.target = Target::TaskOnCpu(shared_tid, pick(cpus));
            break;
          case 2:
            r.target = Target::Task(own_tid);
            break;
          case 3:
            r.target = Target::TaskOnCpu(own_tid, pick(cpus));
            break;
          default:
            r.target = Target::Cpu(pick(cpus));
        }
        Admission a = e.Reserve(r);
        if (a) mine.push_back({a.id(), r});
      }
    });
  }
  for (auto& w : workers) w.join();
  done = true;
  checker.join();
  EXPECT_EQ(overcommitted.load(), 0);
  EXPECT_GT(snapshots.load(), 0u);

  // Nothing lost: the engine's state is exactly what the threads hold.
  testing::ReferenceModel m(cfg);
  size_t total = 0;
  for (const auto& v : held) {
    for (const Held& h : v) {
      // The held set was admitted, so every subset of it fits too: the
      // model must accept each one.
      ASSERT_TRUE(m.Reserve(h.id, h.r));
      ++total;
    }
  }
  Snapshot s = e.TakeSnapshot();
  EXPECT_EQ(s.reservations, total);
  for (const auto& c : s.cpus) {
    EXPECT_EQ(c.cpu_pinned, m.CpuPinned(c.pool, c.cpu));
    EXPECT_EQ(c.max_task_pinned, m.MaxTaskPinned(c.pool, c.cpu));
    EXPECT_LE(c.cpu_pinned + c.max_task_pinned, c.slots);
  }
  for (const auto& v : held) {
    for (const Held& h : v) EXPECT_TRUE(e.Release(h.id));
  }
  s = e.TakeSnapshot();
  EXPECT_EQ(s.reservations, 0u);
  EXPECT_TRUE(s.tasks.empty());
  for (const auto& c : s.cpus) {
    EXPECT_EQ(c.cpu_pinned, 0u);
    EXPECT_EQ(c.max_task_pinned, 0u);
  }
}

TEST(EngineStress, Sharded) { Stress(LockMode::kSharded, 4); }
TEST(EngineStress, Global) { Stress(LockMode::kGlobal, 4); }
TEST(EngineStress, ShardedManyCpus) { Stress(LockMode::kSharded, 64); }

}  // namespace
}  // namespace hwwatch::engine
