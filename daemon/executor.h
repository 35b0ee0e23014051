// One thread that runs posted work in order. The tracer hands its hits
// here: its own thread has a private file table and must run no gRPC code
// (see tracer.h), so it only writes to this executor's eventfd.
#pragma once

#include <functional>
#include <thread>
#include <vector>

#include "arch/scoped_fd.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

class Executor {
 public:
  Executor();
  // Runs what was posted before, then stops.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Post(std::function<void()> fn) EXCLUDES(mu_);
  // The descriptor Post() writes to (for a thread with its own file table).
  int post_fd() const { return posted_.get(); }

 private:
  void Loop() EXCLUDES(mu_);

  arch::ScopedFd posted_;  // eventfd: work queued
  Mutex mu_;
  std::vector<std::function<void()>> queue_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace hwwatch::daemon
