// daemon/fan_out.h: every index once, all done when ForEach returns, and a
// caller is never held up by a helper busy with another caller's work.
#include "daemon/fan_out.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace hwwatch::daemon {
namespace {

TEST(FanOut, EveryIndexRunsOnceBeforeForEachReturns) {
  for (unsigned helpers : {0u, 1u, 3u}) {
    FanOut fan(helpers);
    for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{4099}}) {
      std::vector<std::atomic<int>> runs(n);
      fan.ForEach(n, [&](size_t i) { runs[i].fetch_add(1, std::memory_order_relaxed); });
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(runs[i].load(), 1)
            << "index " << i << " of " << n << ", " << helpers << " helper(s)";
      }
    }
  }
}

TEST(FanOut, AHelperRunsPartOfALargeLoop) {
  FanOut fan(1);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> elsewhere{false};
  // Each index waits a little, so the helper gets its share however late
  // it wakes up.
  fan.ForEach(4 * FanOut::kMinShare, [&](size_t) {
    if (std::this_thread::get_id() != caller) elsewhere = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_TRUE(elsewhere) << "all the work ran on the caller";
}

TEST(FanOut, ACallerFinishesWhileTheHelperIsHeldByAnother) {
  FanOut fan(1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<size_t> held{0};
  // The first caller's work blocks until the second caller is done.
  auto first = std::async(std::launch::async, [&] {
    fan.ForEach(4 * FanOut::kMinShare, [&](size_t) {
      held.fetch_add(1);
      released.wait();
    });
  });
  while (held.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Both the first caller and the helper are stuck: the second caller does
  // its loop alone.
  std::atomic<size_t> ran{0};
  auto second =
      std::async(std::launch::async, [&] { fan.ForEach(1000, [&](size_t) { ran.fetch_add(1); }); });
  const bool finished = second.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  release.set_value();
  first.get();
  ASSERT_TRUE(finished) << "the second caller waited for a busy helper";
  second.get();
  EXPECT_EQ(ran.load(), 1000u);
}

// With CPUs named, each index runs on its CPU, and the caller's CPU mask
// is as it was afterwards.
TEST(FanOut, EachIndexRunsOnTheCpuNamedForIt) {
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE && cpus.size() < 4; ++c) {
    if (CPU_ISSET(c, &before)) cpus.push_back(c);
  }
  ASSERT_FALSE(cpus.empty());
  FanOut fan(3);
  const size_t n = 16 * FanOut::kMinShare;
  std::vector<std::atomic<int>> ran(n);
  auto want = [&](size_t i) { return cpus[i % cpus.size()]; };
  fan.ForEach(
      n, [&](size_t i) { ran[i] = sched_getcpu(); }, want);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(ran[i].load(), want(i)) << "index " << i;
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "the caller was left pinned";
}

}  // namespace
}  // namespace hwwatch::daemon
