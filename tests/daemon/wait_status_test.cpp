#include "daemon/wait_status.h"

#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>

namespace hwwatch::daemon {
namespace {

// Status words as the kernel builds them (kernel/exit.c, ptrace(2)).
constexpr int Exited(int code) { return (code & 0xff) << 8; }
constexpr int Killed(int sig, bool core = false) { return sig | (core ? 0x80 : 0); }
constexpr int Stopped(int sig, int event = 0) { return 0x7f | (sig << 8) | (event << 16); }

TEST(WaitStatus, Exited) {
  const WaitStatus s(Exited(3));
  EXPECT_TRUE(s.exited());
  EXPECT_EQ(s.exit_code(), 3);
  EXPECT_TRUE(s.ended());
  EXPECT_FALSE(s.killed());
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.stop_signal(), 0);
  EXPECT_EQ(s.ptrace_event(), 0);
  EXPECT_FALSE(s.signal_stop());
  EXPECT_EQ(s.raw(), Exited(3));
}

TEST(WaitStatus, ZeroReadsAsExitedWithZero) {
  // The tracer reports a thread it lost track of with status 0.
  const WaitStatus s;
  EXPECT_EQ(s.raw(), 0);
  EXPECT_TRUE(s.exited());
  EXPECT_EQ(s.exit_code(), 0);
  EXPECT_FALSE(s.stopped());
}

TEST(WaitStatus, Killed) {
  const WaitStatus s(Killed(SIGKILL));
  EXPECT_TRUE(s.killed());
  EXPECT_EQ(s.term_signal(), SIGKILL);
  EXPECT_FALSE(s.core_dumped());
  EXPECT_TRUE(s.ended());
  EXPECT_FALSE(s.exited());
  EXPECT_EQ(s.exit_code(), 0);
  EXPECT_FALSE(s.stopped());

  const WaitStatus core(Killed(SIGSEGV, true));
  EXPECT_TRUE(core.killed());
  EXPECT_EQ(core.term_signal(), SIGSEGV);
  EXPECT_TRUE(core.core_dumped());
}

TEST(WaitStatus, SignalDeliveryStop) {
  const WaitStatus s(Stopped(SIGTRAP));
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.stop_signal(), SIGTRAP);
  EXPECT_EQ(s.ptrace_event(), 0);
  EXPECT_TRUE(s.signal_stop());
  EXPECT_FALSE(s.event_stop());
  EXPECT_FALSE(s.group_stop());
  EXPECT_FALSE(s.interrupt_stop());
  EXPECT_FALSE(s.ended());
  EXPECT_EQ(s.term_signal(), 0);
}

TEST(WaitStatus, PtraceEvents) {
  for (int event : {PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE, PTRACE_EVENT_EXEC,
                    PTRACE_EVENT_VFORK_DONE, PTRACE_EVENT_EXIT, PTRACE_EVENT_SECCOMP}) {
    const WaitStatus s(Stopped(SIGTRAP, event));
    EXPECT_TRUE(s.stopped()) << event;
    EXPECT_EQ(s.stop_signal(), SIGTRAP) << event;
    EXPECT_EQ(s.ptrace_event(), event);
    EXPECT_EQ(s.ptrace_event(), s.raw() >> 16);
    EXPECT_FALSE(s.signal_stop()) << event;
    EXPECT_FALSE(s.event_stop()) << event;
    EXPECT_FALSE(s.group_stop()) << event;
  }
}

TEST(WaitStatus, GroupStopOfASeizedTracee) {
  for (int sig : {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}) {
    const WaitStatus s(Stopped(sig, PTRACE_EVENT_STOP));
    EXPECT_TRUE(s.event_stop()) << sig;
    EXPECT_TRUE(s.group_stop()) << sig;
    EXPECT_FALSE(s.interrupt_stop()) << sig;
    EXPECT_FALSE(s.signal_stop()) << sig;
    EXPECT_EQ(s.stop_signal(), sig);
  }
}

TEST(WaitStatus, InterruptStop) {
  const WaitStatus s(Stopped(SIGTRAP, PTRACE_EVENT_STOP));
  EXPECT_TRUE(s.event_stop());
  EXPECT_TRUE(s.interrupt_stop());
  EXPECT_FALSE(s.group_stop());
  EXPECT_EQ(s.ptrace_event(), PTRACE_EVENT_STOP);
}

TEST(WaitStatus, JobControlSignals) {
  EXPECT_TRUE(WaitStatus::IsJobControlSignal(SIGSTOP));
  EXPECT_TRUE(WaitStatus::IsJobControlSignal(SIGTSTP));
  EXPECT_TRUE(WaitStatus::IsJobControlSignal(SIGTTIN));
  EXPECT_TRUE(WaitStatus::IsJobControlSignal(SIGTTOU));
  EXPECT_FALSE(WaitStatus::IsJobControlSignal(SIGTRAP));
  EXPECT_FALSE(WaitStatus::IsJobControlSignal(SIGCONT));
  EXPECT_FALSE(WaitStatus::IsJobControlSignal(0));
}

TEST(WaitStatus, Continued) {
  const WaitStatus s(0xffff);
  EXPECT_TRUE(s.continued());
  EXPECT_FALSE(s.stopped());
  EXPECT_FALSE(s.ended());
}

// The same decoding of statuses a real waitpid() returns.
WaitStatus WaitForChild(pid_t pid, int options = 0) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, options), pid);
  return WaitStatus(status);
}

TEST(WaitStatus, RealExit) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(42);
  const WaitStatus s = WaitForChild(pid);
  EXPECT_TRUE(s.exited());
  EXPECT_EQ(s.exit_code(), 42);
}

TEST(WaitStatus, RealKillAndStop) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    raise(SIGSTOP);
    pause();
    _exit(0);
  }
  const WaitStatus stop = WaitForChild(pid, WUNTRACED);
  EXPECT_TRUE(stop.stopped());
  EXPECT_EQ(stop.stop_signal(), SIGSTOP);
  EXPECT_EQ(stop.ptrace_event(), 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  const WaitStatus dead = WaitForChild(pid);
  EXPECT_TRUE(dead.killed());
  EXPECT_EQ(dead.term_signal(), SIGKILL);
  EXPECT_FALSE(dead.stopped());
}

static_assert(WaitStatus(Stopped(SIGTRAP, PTRACE_EVENT_CLONE)).ptrace_event() ==
              PTRACE_EVENT_CLONE);
static_assert(WaitStatus(Exited(1)).exit_code() == 1);

}  // namespace
}  // namespace hwwatch::daemon
