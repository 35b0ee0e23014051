// daemon/thread_lister.h against /proc: the same threads, each with the
// CPU it last ran on (threads pinned to a CPU ran there last).
#include "daemon/thread_lister.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

#include "daemon/procfs.h"

namespace hwwatch::daemon {
namespace {

TEST(ThreadLister, ListsEveryThreadWithTheCpuItLastRanOn) {
  std::string why;
  auto lister = ThreadLister::Load(why);
  ASSERT_NE(lister, nullptr) << why;
  const int cpus = std::min(2, static_cast<int>(std::thread::hardware_concurrency()));
  std::atomic<bool> stop{false};
  std::atomic<int> ready{0};
  std::map<pid_t, int> pinned;  // tid: CPU
  std::vector<std::atomic<pid_t>> tids(6);
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(i % cpus, &set);
      if (sched_setaffinity(0, sizeof set, &set) != 0) return;
      tids[i] = static_cast<pid_t>(syscall(SYS_gettid));
      ++ready;
      while (!stop) usleep(1000);
    });
  }
  while (ready < 6) usleep(1000);
  for (int i = 0; i < 6; ++i) pinned[tids[i]] = i % cpus;
  auto listed = lister->List(getpid());
  stop = true;
  for (auto& t : threads) t.join();
  ASSERT_TRUE(listed.has_value());
  std::vector<pid_t> got;
  for (const ThreadOnCpu& t : *listed) {
    got.push_back(t.tid);
    if (auto it = pinned.find(t.tid); it != pinned.end()) {
      EXPECT_EQ(t.cpu, it->second) << "thread " << t.tid;
    }
  }
  for (const auto& [tid, cpu] : pinned) {
    EXPECT_TRUE(std::find(got.begin(), got.end(), tid) != got.end()) << "thread " << tid;
  }
  EXPECT_TRUE(std::find(got.begin(), got.end(), getpid()) != got.end());
}

TEST(ThreadLister, NoProcessOrASecondThreadIsLeftToProc) {
  std::string why;
  auto lister = ThreadLister::Load(why);
  ASSERT_NE(lister, nullptr) << why;
  // A pid far beyond any in use (pid_max is at most 4194304).
  EXPECT_FALSE(lister->List(4194304 + 7).has_value());
  std::atomic<pid_t> tid{0};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!stop) usleep(1000);
  });
  while (tid == 0) usleep(1000);
  EXPECT_FALSE(lister->List(tid).has_value()) << "a thread id is not a process";
  stop = true;
  t.join();
}

}  // namespace
}  // namespace hwwatch::daemon
