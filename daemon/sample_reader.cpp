#include "daemon/sample_reader.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace hwwatch::daemon {

SampleReader::SampleReader(Sink sink)
    : sink_(std::move(sink)),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      posted_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  for (int fd : {wake_.get(), posted_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  thread_ = std::thread([this] { Loop(); });
}

SampleReader::~SampleReader() {
  const uint64_t one = 1;
  (void)!write(wake_.get(), &one, sizeof one);
  thread_.join();
}

std::string SampleReader::Add(std::shared_ptr<SampledEvent> e) {
  const int fd = e->event.fd();
  std::lock_guard lock(mu_);
  epoll_event ev{};
  ev.events = EPOLLIN;  // a hang-up (the task exited) is always reported
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return std::string("epoll_ctl: ") + std::strerror(errno);
  }
  events_[fd] = std::move(e);
  return "";
}

void SampleReader::Remove(const SampledEvent& e) {
  const int fd = e.event.fd();
  std::lock_guard lock(mu_);
  auto it = events_.find(fd);
  if (it == events_.end() || it->second.get() != &e) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  events_.erase(it);
}

void SampleReader::Post(std::function<void()> fn) {
  {
    std::lock_guard lock(posts_mu_);
    posts_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  (void)!write(posted_.get(), &one, sizeof one);
}

void SampleReader::Drain(SampledEvent& e) {
  arch::ParsedRing p = e.ring.Read();
  for (const arch::PerfRecord& r : p.records) {
    if (r.kind == arch::PerfRecord::Kind::kExec) {
      if (!e.execed && sink_.execed) sink_.execed(e, static_cast<pid_t>(r.exec.pid));
      e.execed = true;
    } else if (e.execed) {
      continue;  // the new program's accesses are not what was asked for
    } else if (r.kind == arch::PerfRecord::Kind::kSample) {
      samples_.fetch_add(1, std::memory_order_relaxed);
      if (sink_.hit) sink_.hit(e, r.sample);
    } else if (r.kind == arch::PerfRecord::Kind::kLost && sink_.lost) {
      sink_.lost(e, r.lost.lost);
    }
  }
}

void SampleReader::Loop() {
  epoll_event ready[64];
  for (;;) {
    const int n = epoll_wait(epoll_.get(), ready, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (ready[i].data.fd != posted_.get()) continue;
      uint64_t count;
      (void)!read(posted_.get(), &count, sizeof count);
      std::vector<std::function<void()>> work;
      {
        std::lock_guard lock(posts_mu_);
        work.swap(posts_);
      }
      for (auto& fn : work) fn();
    }
    std::lock_guard lock(mu_);
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == wake_.get()) return;
      if (fd == posted_.get()) continue;
      auto it = events_.find(fd);
      if (it == events_.end()) continue;  // removed meanwhile
      SampledEvent& e = *it->second;
      Drain(e);
      if (ready[i].events & (EPOLLHUP | EPOLLERR)) {
        // The task is gone: nothing more will come; stop polling the fd
        // (it stays open, with its slot, until the reservation goes).
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        if (sink_.gone) sink_.gone(e);
      }
    }
  }
}

}  // namespace hwwatch::daemon
