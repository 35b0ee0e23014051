#include "daemon/executor.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace hwwatch::daemon {

Executor::Executor() : posted_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Loop(); });
}

Executor::~Executor() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  const uint64_t one = 1;
  (void)!write(posted_.get(), &one, sizeof one);
  thread_.join();
}

void Executor::Post(std::function<void()> fn) {
  {
    MutexLock lock(mu_);
    queue_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  (void)!write(posted_.get(), &one, sizeof one);
}

void Executor::Loop() {
  for (;;) {
    pollfd p{posted_.get(), POLLIN, 0};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return;
    uint64_t count;
    (void)!read(posted_.get(), &count, sizeof count);
    std::vector<std::function<void()>> work;
    bool stop = false;
    {
      MutexLock lock(mu_);
      work.swap(queue_);
      stop = stop_;
    }
    for (auto& fn : work) fn();
    if (stop) return;
  }
}

}  // namespace hwwatch::daemon
