#include "daemon/procfs.h"

#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

namespace hwwatch::daemon::procfs {
namespace {

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// A pid no process has (above the default pid_max of 2^22).
constexpr pid_t kNoSuchPid = 0x7ffffff0;

TEST(Procfs, ListThreadsIsSortedAndSeesANewThread) {
  std::atomic<pid_t> other{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    other = Gettid();
    while (!done) std::this_thread::yield();
  });
  while (other == 0) std::this_thread::yield();
  const std::vector<pid_t> threads = ListThreads(getpid());
  done = true;
  t.join();
  EXPECT_TRUE(std::is_sorted(threads.begin(), threads.end()));
  EXPECT_NE(std::find(threads.begin(), threads.end(), getpid()), threads.end());
  EXPECT_NE(std::find(threads.begin(), threads.end(), other.load()), threads.end());
  EXPECT_TRUE(ListThreads(kNoSuchPid).empty());
}

TEST(Procfs, ThreadAliveIsFalseForAZombieAndAReapedChild) {
  EXPECT_TRUE(ThreadAlive(Gettid()));
  EXPECT_FALSE(ThreadAlive(kNoSuchPid));
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Not reaped yet: a zombie, which has ended.
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, child, &si, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(ThreadAlive(child));
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(ThreadAlive(child));
}

TEST(Procfs, ThreadAliveSeesASecondThreadEnd) {
  pid_t tid = 0;
  std::atomic<bool> done{false};
  std::atomic<bool> checked{false};
  std::thread t([&] {
    tid = Gettid();
    done = true;
    while (!checked) std::this_thread::yield();
  });
  while (!done) std::this_thread::yield();
  EXPECT_TRUE(ThreadAlive(tid));
  checked = true;
  t.join();
  // join() returns once the kernel cleared the thread's tid word, a moment
  // before it releases the thread: allow that moment (bounded).
  bool alive = true;
  for (int i = 0; i < 2000 && (alive = ThreadAlive(tid)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_FALSE(alive);
}

TEST(Procfs, StartTimeNamesAThread) {
  const auto mine = StartTime(Gettid(), getpid());
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(StartTime(Gettid(), getpid()), mine);  // stable
  std::optional<uint64_t> later;
  std::thread t([&] { later = StartTime(Gettid(), getpid()); });
  t.join();
  ASSERT_TRUE(later.has_value());
  EXPECT_GE(*later, *mine);
  EXPECT_FALSE(StartTime(kNoSuchPid, getpid()).has_value());
  EXPECT_FALSE(StartTime(Gettid(), kNoSuchPid).has_value());
}

TEST(Procfs, TgidOfAnyThreadIsItsProcessUntilItEnds) {
  EXPECT_EQ(TgidOf(getpid()), getpid());
  std::optional<pid_t> other_first, other_again;
  std::optional<pid_t> guessed;
  std::thread t([&] {
    guessed = TgidOf(Gettid(), getpid());  // the guess, checked
  });
  t.join();
  EXPECT_EQ(guessed, getpid());
  t = std::thread([&] {
    other_first = TgidOf(Gettid());  // read from /proc
    other_again = TgidOf(Gettid());  // the one found before, checked
  });
  t.join();
  EXPECT_EQ(other_first, getpid());
  EXPECT_EQ(other_again, getpid());
  EXPECT_FALSE(TgidOf(kNoSuchPid).has_value());
  EXPECT_FALSE(TgidOf(0).has_value());

  // A second thread of another process: its process, then nothing once
  // that process is gone (the remembered answer is checked, not trusted).
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    std::thread worker([&] {
      const pid_t tid = Gettid();
      (void)!write(fds[1], &tid, sizeof tid);
      pause();
    });
    worker.join();
    _exit(0);
  }
  close(fds[1]);
  pid_t worker = 0;
  ASSERT_EQ(read(fds[0], &worker, sizeof worker), static_cast<ssize_t>(sizeof worker));
  close(fds[0]);
  EXPECT_NE(worker, child);
  EXPECT_EQ(TgidOf(worker, getpid()), child);  // a wrong guess is checked
  EXPECT_EQ(TgidOf(worker), child);
  EXPECT_EQ(TgidOf(child), child);
  kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(TgidOf(worker).has_value());
  EXPECT_FALSE(TgidOf(child).has_value());
}

TEST(Procfs, CredentialsAndAncestry) {
  auto self = ReadProcCreds(getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->pid, getpid());
  EXPECT_EQ(self->tgid, getpid());
  EXPECT_EQ(self->ppid, getppid());
  EXPECT_EQ(self->ruid, getuid());
  EXPECT_FALSE(ReadProcCreds(kNoSuchPid).has_value());
  EXPECT_TRUE(IsDescendant(getpid(), getpid()));
  EXPECT_TRUE(IsDescendant(getpid(), getppid()));
  EXPECT_FALSE(IsDescendant(getppid(), getpid()));
  const int scope = ReadYamaScope();
  EXPECT_GE(scope, 0);
  EXPECT_LE(scope, 3);
}

TEST(Procfs, ReadMemoryReadsWholeBytesOrNothing) {
  const char here[] = "watched bytes";
  const auto address = reinterpret_cast<uint64_t>(here);
  EXPECT_EQ(procfs::ReadMemory(getpid(), address, 7), std::optional<std::string>("watched"));
  EXPECT_EQ(procfs::ReadMemory(getpid(), address, 0), std::nullopt);
  EXPECT_EQ(procfs::ReadMemory(getpid(), 0, 8), std::nullopt);  // nothing mapped at 0
}

}  // namespace
}  // namespace hwwatch::daemon::procfs
