#include "arch/child_process.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

namespace hwwatch::arch {

Result<int> WaitForStateChange(pid_t pid, std::chrono::milliseconds timeout, int options) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, options | WNOHANG | __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("waitpid");
    }
    if (r == pid) return status;
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{ETIMEDOUT, "process " + std::to_string(pid) + " did not change state in time"};
    }
    // 100 us between polls: a ptrace stop is seen within a fraction of a
    // millisecond, and the loop always ends at the deadline.
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, nullptr);
  }
}

Result<ChildProcess> ChildProcess::Fork(int (*body)(void*), void* arg) {
  pid_t pid = fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) _exit(body(arg));
  return ChildProcess(pid);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    pid_ = std::exchange(other.pid_, -1);
  }
  return *this;
}

ChildProcess::~ChildProcess() { KillAndReap(); }

Result<int> ChildProcess::Wait(std::chrono::milliseconds timeout, int options) {
  if (pid_ <= 0) return Error{ECHILD, "child already reaped"};
  Result<int> status = WaitForStateChange(pid_, timeout, options);
  if (status.ok() && (WIFEXITED(*status) || WIFSIGNALED(*status))) pid_ = -1;
  return status;
}

void ChildProcess::KillAndReap() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, __WALL) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

}  // namespace hwwatch::arch
