// A forked child process that its owner always kills and reaps.
#pragma once

#include <sys/types.h>

#include <chrono>

#include "arch/result.h"

namespace hwwatch::arch {

// waitpid(pid, options | WNOHANG | __WALL) polled until `pid` changes state
// or `timeout` passes (ETIMEDOUT). Works for children and for tracees.
Result<int> WaitForStateChange(pid_t pid, std::chrono::milliseconds timeout, int options = 0);

class ChildProcess {
 public:
  // Forks; the child runs body(arg) and _exit()s with its return value.
  // The parent may be multithreaded, so `body` must stick to
  // async-signal-safe calls (read, write, ptrace, raise, _exit, plain
  // memory accesses): no allocation, no locks, no stdio.
  static Result<ChildProcess> Fork(int (*body)(void*), void* arg);

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool reaped() const { return pid_ <= 0; }

  // waitpid(pid, options | WNOHANG) polled until a state change or the
  // timeout; returns the wait status (ETIMEDOUT error when nothing happened).
  // When the status says the child exited or was killed, it counts as reaped.
  Result<int> Wait(std::chrono::milliseconds timeout, int options = 0);

  // SIGKILL and reap (idempotent). A ptrace-stopped child dies too.
  void KillAndReap();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

}  // namespace hwwatch::arch
