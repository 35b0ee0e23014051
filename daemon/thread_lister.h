// A process's threads, and the CPU each last ran on, from the kernel's own
// thread list through a BPF task iterator (daemon/bpf/threads.bpf.c): one
// pass, where /proc/PID/task instantiates a directory entry per thread
// (about 1 us a thread when the entries are cold). The perf backends open
// a thread's events from the CPU it last ran on: installing an event on a
// thread that last ran elsewhere interrupts that CPU (2 to 4 times the
// cost of the open in this project's measurements).
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

struct hwwatch_threads;

namespace hwwatch::daemon {

struct ThreadOnCpu {
  pid_t tid = 0;
  int cpu = -1;  // where it last ran
};

class ThreadLister {
 public:
  // Null, with `why` set, where the program cannot load (no BPF, no BTF,
  // a kernel before 6.1 without per-process task iterators).
  static std::unique_ptr<ThreadLister> Load(std::string& why);
  ~ThreadLister();
  ThreadLister(const ThreadLister&) = delete;
  ThreadLister& operator=(const ThreadLister&) = delete;

  // The threads of process `pid`, by tid. Nullopt where the iterator
  // failed or found none: no such process, or `pid` is a thread other
  // than its process's first (the caller reads /proc, which tells).
  std::optional<std::vector<ThreadOnCpu>> List(pid_t pid) const;

 private:
  explicit ThreadLister(hwwatch_threads* skel) : skel_(skel) {}
  hwwatch_threads* skel_;
};

}  // namespace hwwatch::daemon
