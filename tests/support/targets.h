// Test support: things to watch, and the kernel's own count of free debug
// register slots (what perf_event_open still accepts), used to check that
// the daemon armed or freed registers for real.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace hwwatch::testing {

// A forked process that sleeps until killed (and is killed and reaped on
// destruction). Fork it before starting threads of the test's own.
class Sleeper {
 public:
  Sleeper();
  ~Sleeper() { Kill(); }
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;
  pid_t pid() const { return pid_; }
  // SIGKILL and reap now (idempotent); also works while it is traced.
  void Kill();

 private:
  pid_t pid_;
};

// One of the tests/client/sym_target_<kind> programs (kind: pie, nopie,
// stripped), blocked on its stdin after printing where its globals are as
// the running process sees them; killed and reaped on destruction.
class SymbolTarget {
 public:
  explicit SymbolTarget(const std::string& kind);
  ~SymbolTarget();
  SymbolTarget(const SymbolTarget&) = delete;
  SymbolTarget& operator=(const SymbolTarget&) = delete;
  pid_t pid() const { return pid_; }
  bool started() const { return counter != 0; }
  uint64_t counter = 0, count_up = 0, block = 0, lib_counter = 0;

 private:
  pid_t pid_ = -1;
  int to_ = -1;
};

// A child that execs /bin/sleep when told to (Exec()), killed and reaped
// on destruction.
class Execer {
 public:
  Execer();
  ~Execer();
  Execer(const Execer&) = delete;
  Execer& operator=(const Execer&) = delete;
  pid_t pid() const { return pid_; }
  void Exec();

 private:
  pid_t pid_ = -1;
  int go_ = -1;
};

// The process whose thread traces `pid` (TracerPid names a thread), 0 when
// none, -1 when `pid` is gone.
pid_t TracerOf(pid_t pid);

// Write breakpoints the kernel still accepts on thread `tid` (at most 16;
// every one opened is closed again).
unsigned KernelFreeOnThread(pid_t tid);
// Read/write breakpoints the kernel still accepts on CPU `cpu`.
unsigned KernelFreeOnCpu(unsigned cpu);

}  // namespace hwwatch::testing
