// Process targets through the real daemon: every thread of the process is
// armed in the kernel, threads it starts later are armed too (ThreadAdded),
// threads that end are dropped (TargetExited), and Release gives all back.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::KernelFreeOnThread;
using testing::Request;
using testing::TracerOf;

namespace v1 = ::hwwatch::v1;

// tests/integration/threads_target.cpp, driven through its stdin/stdout.
class ThreadsTarget {
 public:
  ThreadsTarget() {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      const std::string bin = std::string(getenv("HWWATCH_BIN_DIR")) + "/../tests/threads_target";
      execl(bin.c_str(), bin.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = fdopen(out[0], "r");
  }
  ~ThreadsTarget() {
    if (to_ >= 0) close(to_);
    if (from_) fclose(from_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // Sends a command and returns the line it answers.
  std::string Ask(char c) {
    (void)!write(to_, &c, 1);
    return Line();
  }
  std::string Line() {
    char buf[128];
    return from_ && std::fgets(buf, sizeof buf, from_) ? std::string(buf) : std::string();
  }
  std::vector<pid_t> Threads() const {
    std::vector<pid_t> out;
    for (const auto& d :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task")) {
      out.push_back(std::stoi(d.path().filename().string()));
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1;
  FILE* from_ = nullptr;
};

// A daemon, tests/integration/threads_target, a client: in that order.
class ProcessTarget : public testing::DaemonTest {
 protected:
  ThreadsTarget target;
};

// The next event other than a hit within 10 s (cancels the stream if none).
std::optional<v1::Event> NextLifecycle(client::EventStream& s) {
  auto got = std::async(std::launch::async, [&s] {
    v1::Event e;
    while (s.Next(&e)) {
      if (!e.has_hit()) return std::optional<v1::Event>(e);
    }
    return std::optional<v1::Event>();
  });
  if (got.wait_for(std::chrono::seconds(10)) != std::future_status::ready) s.Cancel();
  return got.get();
}

TEST_F(ProcessTarget, EveryThreadNowAndLaterIsArmedAndExitsAreDropped) {
  ASSERT_EQ(target.Line(), "ready\n");
  const std::vector<pid_t> threads = target.Threads();
  // Main and two workers (a sanitizer runtime may add its own thread).
  ASSERT_GE(threads.size(), 3u);
  for (pid_t tid : threads) ASSERT_EQ(KernelFreeOnThread(tid), 4u) << "slots held outside";

  auto r = client().Reserve(Request().Pid(target.pid()).At(0x10000, 8));
  ASSERT_TRUE(r) << r.error().ToString();
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 3u) << "thread " << tid;

  auto stream = client().Follow({r->id()}, true);
  int added = 0;
  ASSERT_EQ(std::sscanf(target.Ask('n').c_str(), "tid %d", &added), 1);
  auto e = NextLifecycle(*stream);
  ASSERT_TRUE(e.has_value()) << "no ThreadAdded within 10 s";
  ASSERT_TRUE(e->has_thread_added()) << e->DebugString();
  EXPECT_EQ(e->thread_added().tid(), added);
  EXPECT_EQ(e->thread_added().pid(), target.pid());
  EXPECT_EQ(e->thread_added().reservation_id(), r->id());
  EXPECT_EQ(KernelFreeOnThread(added), 3u) << "the new thread is armed";

  int exited = 0;
  ASSERT_EQ(std::sscanf(target.Ask('x').c_str(), "exited %d", &exited), 1);
  EXPECT_EQ(exited, added);
  e = NextLifecycle(*stream);
  ASSERT_TRUE(e.has_value()) << "no TargetExited within 10 s";
  ASSERT_TRUE(e->has_exited()) << e->DebugString();
  EXPECT_EQ(e->exited().tid(), exited);

  ASSERT_TRUE(client().Release(r->id()));
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 4u) << "thread " << tid;
  stream->Cancel();
}

// The ptrace backend: the daemon traces every thread, and the kernel
// attaches the threads the process starts, so they are armed at their
// first stop, before they run: no window in which they go unwatched.
TEST_F(ProcessTarget, ThePtraceBackendArmsNewThreadsBeforeTheyRun) {
  ASSERT_EQ(target.Line(), "ready\n");
  const std::vector<pid_t> threads = target.Threads();
  ASSERT_GE(threads.size(), 3u);
  for (pid_t tid : threads) ASSERT_EQ(KernelFreeOnThread(tid), 4u) << "slots held outside";
  auto r = client().Reserve(Request().Pid(target.pid()).At(0x10000, 8).Backend(v1::BACKEND_PTRACE));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->backend(), v1::BACKEND_PTRACE);
  for (pid_t tid : threads) {
    EXPECT_EQ(TracerOf(tid), daemon().pid()) << "thread " << tid;
    EXPECT_EQ(KernelFreeOnThread(tid), 3u) << "thread " << tid;
  }
  auto stream = client().Follow({r->id()}, true);
  int added = 0;
  ASSERT_EQ(std::sscanf(target.Ask('n').c_str(), "tid %d", &added), 1);
  // It has run (it printed its tid): armed already, not 250 ms later.
  EXPECT_EQ(KernelFreeOnThread(added), 3u) << "the new thread ran unarmed";
  EXPECT_EQ(TracerOf(added), daemon().pid());
  auto e = NextLifecycle(*stream);
  ASSERT_TRUE(e.has_value()) << "no ThreadAdded within 10 s";
  ASSERT_TRUE(e->has_thread_added()) << e->DebugString();
  EXPECT_EQ(e->thread_added().tid(), added);

  int exited = 0;
  ASSERT_EQ(std::sscanf(target.Ask('x').c_str(), "exited %d", &exited), 1);
  e = NextLifecycle(*stream);
  ASSERT_TRUE(e.has_value()) << "no TargetExited within 10 s";
  ASSERT_TRUE(e->has_exited()) << e->DebugString();
  EXPECT_EQ(e->exited().tid(), exited);

  ASSERT_TRUE(client().Release(r->id()));
  for (pid_t tid : threads) EXPECT_EQ(TracerOf(tid), 0) << "thread " << tid;
  stream->Cancel();
}

// Modify of a process-wide watch: every thread moves to the new watch or
// none does; threads started later get the new one.
TEST_F(ProcessTarget, ModifyMovesEveryThreadOrNone) {
  ASSERT_EQ(target.Line(), "ready\n");
  const std::vector<pid_t> threads = target.Threads();
  ASSERT_GE(threads.size(), 3u);
  for (pid_t tid : threads) ASSERT_EQ(KernelFreeOnThread(tid), 4u) << "slots held outside";
  v1::ReserveRequest req = Request().Pid(target.pid()).At(0x10000, 8);
  auto r = client().Reserve(req);
  ASSERT_TRUE(r) << r.error().ToString();
  v1::Watch wide = req.watch();
  wide.set_length(32);  // 4 registers
  auto m = client().Modify(r->id(), wide);
  ASSERT_TRUE(m) << m.error().ToString();
  EXPECT_EQ(m->weight(), 4u);
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 0u) << "thread " << tid;
  v1::Watch two = req.watch();
  two.set_length(16);  // 2 registers
  m = client().Modify(r->id(), two);
  ASSERT_TRUE(m) << m.error().ToString();
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 2u) << "thread " << tid;

  // One thread cannot take 4: nobody moves.
  ASSERT_TRUE(client().Reserve(Request().Tid(threads.back()).At(0x20000, 2)));
  auto refused = client().Modify(r->id(), wide);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(refused.error().refusal.has_value());
  EXPECT_EQ(refused.error().refusal->tid(), threads.back());
  for (size_t i = 0; i + 1 < threads.size(); ++i) {
    EXPECT_EQ(KernelFreeOnThread(threads[i]), 2u) << "thread " << threads[i] << " moved alone";
  }
  EXPECT_EQ(KernelFreeOnThread(threads.back()), 1u);

  // A thread started now gets the 2-register watch.
  auto stream = client().Follow({r->id()}, true);
  int added = 0;
  ASSERT_EQ(std::sscanf(target.Ask('n').c_str(), "tid %d", &added), 1);
  auto e = NextLifecycle(*stream);
  ASSERT_TRUE(e.has_value() && e->has_thread_added()) << "no ThreadAdded within 10 s";
  EXPECT_EQ(KernelFreeOnThread(added), 2u);
  stream->Cancel();
}

TEST_F(ProcessTarget, AFullThreadRefusesTheWholeProcessAndLeavesNothingArmed) {
  ASSERT_EQ(target.Line(), "ready\n");
  const std::vector<pid_t> threads = target.Threads();
  // Main and two workers (a sanitizer runtime may add its own thread).
  ASSERT_GE(threads.size(), 3u);
  // Fill the last thread through the daemon.
  v1::ReserveRequest one = Request().Tid(threads.back()).At(0x20000, 32);
  ASSERT_TRUE(client().Reserve(one));
  v1::ReserveRequest all = one;
  all.mutable_target()->set_pid(target.pid());
  all.mutable_watch()->set_length(8);
  auto r = client().Reserve(all);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(r.error().refusal.has_value());
  EXPECT_EQ(r.error().refusal->reason(), v1::Refusal::TASK_FULL);
  EXPECT_EQ(r.error().refusal->tid(), threads.back());
  // The threads armed before the full one were rolled back.
  for (size_t i = 0; i + 1 < threads.size(); ++i) EXPECT_EQ(KernelFreeOnThread(threads[i]), 4u);
}

// Two samples watches of one process at different addresses: their events
// find their watch by process and address (BPF capture), so one cannot
// move onto the other's register, and the refused modify moves nothing.
TEST_F(ProcessTarget, ModifyOntoAnotherWatchsAddressOfTheProcessIsRefused) {
  ASSERT_EQ(target.Line(), "ready\n");
  auto caps = client().GetCapabilities();
  ASSERT_TRUE(caps);
  ASSERT_EQ(caps->capture().path(), v1::Capture::PATH_BPF) << caps->capture().detail();
  const std::vector<pid_t> threads = target.Threads();
  for (pid_t tid : threads) ASSERT_EQ(KernelFreeOnThread(tid), 4u) << "slots held outside";
  auto a = client().Reserve(Request().Pid(target.pid()).At(0x10000, 8));
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = client().Reserve(Request().Pid(target.pid()).At(0x20000, 8));
  ASSERT_TRUE(b) << b.error().ToString();
  auto refused = client().Modify(b->id(), testing::Watch(0x10000, 16));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(refused.error().message.find("0x10000"), std::string::npos) << refused.error().message;
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 2u) << "thread " << tid;
  // Once the other is gone, it moves (two registers now).
  ASSERT_TRUE(client().Release(a->id()));
  auto m = client().Modify(b->id(), testing::Watch(0x10000, 16));
  ASSERT_TRUE(m) << m.error().ToString();
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 2u) << "thread " << tid;
  ASSERT_TRUE(client().Release(b->id()));
  for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 4u) << "thread " << tid;
}

// A process of 150 threads is armed over several threads of the daemon
// (daemon/fan_out.h): every thread gets its register, or, when the kernel
// refuses one of them (slots taken outside hwwatchd), the refusal names
// that thread and no other thread keeps anything.
TEST_F(ProcessTarget, ManyThreadsAreArmedAllOrNone) {
  ASSERT_EQ(target.Line(), "ready\n");
  for (int i = 0; i < 147; ++i) ASSERT_EQ(target.Ask('n').rfind("tid ", 0), 0u);
  std::vector<pid_t> threads = target.Threads();
  ASSERT_GE(threads.size(), 150u);
  std::sort(threads.begin(), threads.end());
  for (pid_t tid : threads) ASSERT_EQ(KernelFreeOnThread(tid), 4u) << "slots held outside";
  const pid_t full = threads[threads.size() / 2];
  for (v1::Delivery delivery : {v1::DELIVERY_COUNT, v1::DELIVERY_SAMPLES}) {
    SCOPED_TRACE(v1::Delivery_Name(delivery));
    const v1::ReserveRequest req =
        Request().Pid(target.pid()).At(0x30000, 8).Backend(v1::BACKEND_PERF).Delivery(delivery);
    {
      // Every slot of one thread in the middle, held outside the daemon.
      std::vector<arch::PerfBreakpoint> outside;
      for (uint64_t a = 0; a < 4; ++a) {
        auto bp = arch::PerfBreakpoint::Open({0x40000 + 8 * a, 8, arch::Access::kWrite},
                                             arch::PerfTarget::Thread(full));
        ASSERT_TRUE(bp) << bp.error().message;
        outside.push_back(std::move(bp.value()));
      }
      auto refused = client().Reserve(req);
      ASSERT_FALSE(refused);
      EXPECT_EQ(refused.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
      ASSERT_TRUE(refused.error().refusal.has_value());
      EXPECT_EQ(refused.error().refusal->reason(), v1::Refusal::HELD_OUTSIDE);
      EXPECT_EQ(refused.error().refusal->tid(), full);
      for (pid_t tid : threads) {
        if (tid == full) continue;
        EXPECT_EQ(KernelFreeOnThread(tid), 4u) << "thread " << tid << " kept a register";
      }
    }
    auto r = client().Reserve(req);
    ASSERT_TRUE(r) << r.error().ToString();
    for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 3u) << "thread " << tid;
    ASSERT_TRUE(client().Release(r->id()));
    for (pid_t tid : threads) EXPECT_EQ(KernelFreeOnThread(tid), 4u) << "thread " << tid;
  }
}

}  // namespace
}  // namespace hwwatch
