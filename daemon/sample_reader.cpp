#include "daemon/sample_reader.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "daemon/procfs.h"

namespace hwwatch::daemon {

namespace {

// The hit of sample `s` of `e`: which register of the region matched (samples
// carry its address), and the watched bytes as they are now.
RawHit HitOf(const SampledEvent& e, const arch::PerfSample& s) {
  RawHit h;
  h.group = e.reservation;
  h.tid = static_cast<pid_t>(s.tid);
  h.ip = s.ip;
  h.address = s.addr;
  for (size_t i = 0; i < e.registers.size(); ++i) {
    if (e.registers[i] == s.addr) h.slot = static_cast<unsigned>(i);
  }
  // The access is done when the sample is read (x86 traps after it; arm64
  // perf steps over before resuming the task).
  h.value = procfs::ReadMemory(e.pid, e.capture_address, e.capture_length);
  return h;
}

}  // namespace

SampleReader::SampleReader(HitSink& sink)
    : sink_(sink),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      kick_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  for (int fd : {wake_.get(), kick_.get()}) {
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
  MutexLock lock(mu_);
  epoll_event ev{};
  ev.events = EPOLLIN;  // a hang-up (the task exited) is always reported
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return std::string("epoll_ctl: ") + std::strerror(errno);
  }
  if (events_.empty()) {
    const uint64_t one = 1;
    (void)!write(kick_.get(), &one, sizeof one);
  }
  events_[fd] = std::move(e);
  return "";
}

void SampleReader::Remove(const SampledEvent& e) {
  const int fd = e.event.fd();
  MutexLock lock(mu_);
  auto it = events_.find(fd);
  if (it == events_.end() || it->second.get() != &e) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  events_.erase(it);
}

void SampleReader::Drain(SampledEvent& e) {
  arch::ParsedRing p = e.ring.Read();
  for (const arch::PerfRecord& r : p.records) {
    if (r.kind == arch::PerfRecord::Kind::kExec) {
      if (!e.execed) sink_.Execed(e.reservation, static_cast<pid_t>(r.exec.pid));
      e.execed = true;
    } else if (e.execed) {
      continue;  // the new program's accesses are not what was asked for
    } else if (r.kind == arch::PerfRecord::Kind::kSample) {
      samples_.fetch_add(1, std::memory_order_relaxed);
      sink_.Hit(HitOf(e, r.sample));
    } else if (r.kind == arch::PerfRecord::Kind::kLost) {
      sink_.Lost(e.reservation, r.lost.lost);
    }
  }
}

void SampleReader::Loop() {
  epoll_event ready[64];
  bool idle = true;  // no ring to drain: sleep until one comes
  auto drained = std::chrono::steady_clock::now();
  for (;;) {
    const int n = epoll_wait(epoll_.get(), ready, 64, idle ? -1 : kDrainMs);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    MutexLock lock(mu_);
    idle = events_.empty();
    // Rings below their wake-up mark, even while others keep waking us.
    const auto now = std::chrono::steady_clock::now();
    if (now - drained >= std::chrono::milliseconds(kDrainMs)) {
      drained = now;
      for (auto& [fd, e] : events_) Drain(*e);
    }
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == wake_.get()) return;
      if (fd == kick_.get()) {
        uint64_t count = 0;
        (void)!read(fd, &count, sizeof count);
        continue;
      }
      auto it = events_.find(fd);
      if (it == events_.end()) continue;  // removed meanwhile
      SampledEvent& e = *it->second;
      Drain(e);
      if (ready[i].events & (EPOLLHUP | EPOLLERR)) {
        // The task is gone: nothing more will come; stop polling the fd
        // (it stays open, with its slot, until the reservation goes).
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
        sink_.ThreadGone(e.reservation, e.pid);
      }
    }
  }
}

}  // namespace hwwatch::daemon
