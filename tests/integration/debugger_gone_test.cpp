// A debugger's end never kills its target: a real gdb attached to a program
// that writes every millisecond, a stop-delivery watch reserved while gdb
// traces it (so its stops are gdb's), then gdb detaches, quits, or is
// SIGKILLed while the watch lives. Before the guard, the program died of
// SIGTRAP at its next write (exit status 133). Now the capture program's
// guard holds the stop back at the trap (Linux >= 6.10 honours its "no"),
// the daemon disarms the watch and says why in the reservation's end, and
// the program writes on.
//
// Needs hits (not run where the self-test says the registers never fire,
// unless HWWATCH_REQUIRE_FIRES=1) and a kernel that lets the guard suppress
// a SIGTRAP (not run before Linux 6.10, where the window is the daemon's
// sweep: up to 250 ms in which the next hit kills the untraced thread).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::Request;
using testing::TracerOf;
namespace v1 = ::hwwatch::v1;

// The writer's variable: the same address in the forked child.
volatile uint64_t g_written = 0;

// A child that adds one to g_written every millisecond until killed.
class MillisecondWriter {
 public:
  MillisecondWriter() {
    pid_ = fork();
    if (pid_ == 0) {
      const timespec gap{0, 1000000};
      for (;;) {
        g_written = g_written + 1;
        nanosleep(&gap, nullptr);
      }
    }
  }
  ~MillisecondWriter() {
    if (pid_ <= 0) return;  // never kill(-1): every process
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  static uint64_t address() { return reinterpret_cast<uintptr_t>(&g_written); }
  // Its counter now, read from its memory (0 if it cannot be read).
  uint64_t Count() const {
    uint64_t v = 0;
    iovec local{&v, sizeof v};
    iovec remote{const_cast<uint64_t*>(&g_written), sizeof v};
    return process_vm_readv(pid_, &local, 1, &remote, 1, 0) == sizeof v ? v : 0;
  }
  // "" while it runs; else how it ended (and it is reaped).
  std::string Ended() {
    int status = 0;
    if (pid_ <= 0) return "gone";
    if (waitpid(pid_, &status, WNOHANG) != pid_) return "";
    pid_ = -1;
    if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
    return "exited " + std::to_string(WEXITSTATUS(status));
  }

 private:
  pid_t pid_ = -1;
};

enum class End { kDetach, kQuit, kSigkill };

const char* Name(End end) {
  switch (end) {
    case End::kDetach:
      return "Detach";
    case End::kQuit:
      return "Quit";
    case End::kSigkill:
      return "Sigkill";
  }
  return "?";
}

// gdb attached to `pid` in batch mode, waiting on a FIFO until Go(); then it
// runs `detach`, or ends its batch (gdb detaches from what it attached to
// when it quits).
class Gdb {
 public:
  Gdb(pid_t pid, End end, const std::string& dir) : fifo_(dir + "/go"), log_(dir + "/gdb.log") {
    if (mkfifo(fifo_.c_str(), 0600) != 0) return;
    const std::string wait = "shell cat " + fifo_ + " >/dev/null";
    const std::string pid_s = std::to_string(pid);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);  // gdb and its shell, killed as one
      const int out = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int in = open("/dev/null", O_RDONLY);
      dup2(in, 0);
      dup2(out, 1);
      dup2(out, 2);
      if (end == End::kDetach) {
        execlp("gdb", "gdb", "-nx", "-q", "-batch", "-p", pid_s.c_str(), "-ex", wait.c_str(), "-ex",
               "detach", nullptr);
      } else {
        execlp("gdb", "gdb", "-nx", "-q", "-batch", "-p", pid_s.c_str(), "-ex", wait.c_str(),
               nullptr);
      }
      _exit(127);
    }
  }
  ~Gdb() {
    if (pid_ > 0) {
      Kill();
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove(fifo_);
  }
  pid_t pid() const { return pid_; }
  // SIGKILL to gdb and its shell.
  void Kill() {
    if (pid_ > 0) kill(-pid_, SIGKILL);
  }
  // Lets its `shell cat` end (once cat has the FIFO open: within 10 s).
  void Release() {
    for (int i = 0; i < 1000; ++i) {
      const int fd = open(fifo_.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) {
        close(fd);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Waits for gdb to exit (at most 20 s): its exit status, or -1.
  int Wait() {
    for (int i = 0; i < 2000; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  std::string Log() const {
    std::string out;
    if (FILE* f = std::fopen(log_.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }

 private:
  std::string fifo_, log_;
  pid_t pid_ = -1;
};

bool KernelSuppresses() {
  utsname u{};
  unsigned major = 0, minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%u.%u", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 10);
}

class DebuggerGone : public ::testing::WithParamInterface<End>, public testing::DaemonTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonTest::SetUp());
    auto caps = client().GetCapabilities();
    ASSERT_TRUE(caps) << caps.error().ToString();
    ASSERT_EQ(caps->capture().path(), v1::Capture::PATH_BPF)
        << "the guard is a BPF program: " << caps->capture().detail();
    bool fires = false;
    for (const auto& t : caps->self_test()) {
      fires |= t.backend() == v1::BACKEND_PERF && t.outcome() == v1::SelfTestResult::FIRES;
    }
    const char* require = std::getenv("HWWATCH_REQUIRE_FIRES");
    if (!fires) {
      ASSERT_FALSE(require != nullptr && std::string(require) == "1")
          << "the registers must fire here";
      GTEST_SKIP() << "not run: this host's debug registers never fire";
    }
    if (!KernelSuppresses()) {
      GTEST_SKIP() << "not run: before Linux 6.10 the kernel sends a stop the guard holds back; "
                      "the window is the daemon's sweep (up to 250 ms)";
    }
    ASSERT_EQ(system("gdb --version >/dev/null 2>&1"), 0) << "gdb is not installed";
    dir_ = std::filesystem::temp_directory_path() /
           ("hwwatch-gdb-" + std::to_string(getpid()) + "-" + Name(GetParam()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_P(DebuggerGone, TheTargetWritesOn) {
  const End end = GetParam();
  MillisecondWriter writer;
  ASSERT_GT(writer.pid(), 0);
  auto stream = client().Follow({}, true);
  Gdb gdb(writer.pid(), end, dir_.string());
  ASSERT_GT(gdb.pid(), 0);
  // Until gdb traces the writer (it attaches, then waits on the FIFO).
  for (int i = 0; i < 2000 && TracerOf(writer.pid()) != gdb.pid(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(TracerOf(writer.pid()), gdb.pid()) << gdb.Log();
  auto r = client().Reserve(
      Request().Tid(writer.pid()).At(MillisecondWriter::address(), 8).Delivery(v1::DELIVERY_STOP));
  ASSERT_TRUE(r) << r.error().ToString();
  const pid_t debugger = gdb.pid();
  if (end == End::kSigkill) {
    gdb.Kill();
    EXPECT_EQ(gdb.Wait(), 128 + SIGKILL);
  } else {
    gdb.Release();
    EXPECT_EQ(gdb.Wait(), 0) << gdb.Log();
  }
  // The reservation ends, saying why (the guard's word, or the sweep's).
  auto ended = std::async(std::launch::async, [&] {
    for (v1::Event e; stream->Next(&e);) {
      if (e.has_released() && e.released().reservation_id() == r->id()) return e.released().why();
    }
    return std::string("(the stream ended)");
  });
  if (ended.wait_for(std::chrono::seconds(5)) != std::future_status::ready) stream->Cancel();
  const std::string why = ended.get();
  EXPECT_NE(why.find("its debugger (pid " + std::to_string(debugger) + ")"), std::string::npos)
      << Name(end) << ": " << why;
  // The writer lives, untraced, and writes on.
  const uint64_t before = writer.Count();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t after = writer.Count();
  EXPECT_EQ(writer.Ended(), "") << "after gdb's " << Name(end);
  EXPECT_GT(after, before) << "the writer does not write after gdb's " << Name(end);
  EXPECT_EQ(TracerOf(writer.pid()), 0);
  stream->Cancel();
}

INSTANTIATE_TEST_SUITE_P(EachEnd, DebuggerGone,
                         ::testing::Values(End::kDetach, End::kQuit, End::kSigkill),
                         [](const auto& info) { return std::string(Name(info.param)); });

}  // namespace
}  // namespace hwwatch
