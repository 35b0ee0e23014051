// The perf sample reader: one thread that waits (epoll) on the ring buffers
// of every sampling breakpoint the daemon armed, parses their records and
// hands hits to the daemon's HitSink (reading the watched bytes when the
// sample is read: the access is done by then). It owns nothing of a reservation but a reference to
// its event: Remove() is synchronous, so after it returns the reader no
// longer touches that ring and closing the event frees the kernel's slot.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "arch/perf_event.h"
#include "arch/perf_ring.h"
#include "arch/scoped_fd.h"
#include "daemon/hit_sink.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

// One armed sampling breakpoint and its ring (the other registers of the
// same reservation write into this ring too).
struct SampledEvent {
  arch::PerfBreakpoint event;
  arch::PerfRingBuffer ring;
  uint64_t reservation = 0;
  pid_t pid = -1;  // the watched task (-1: a CPU target)
  // Bytes to read from `pid` after each hit (length 0: none).
  uint64_t capture_address = 0;
  uint32_t capture_length = 0;
  // The address of each register of the reservation, in cover order.
  std::vector<uint64_t> registers;
  // The task exec'd: later samples are of another program (reader thread).
  bool execed = false;
};

class SampleReader {
 public:
  explicit SampleReader(HitSink& sink);
  ~SampleReader();
  SampleReader(const SampleReader&) = delete;
  SampleReader& operator=(const SampleReader&) = delete;

  // Empty on success, else why the reader cannot follow the event.
  std::string Add(std::shared_ptr<SampledEvent> e) EXCLUDES(mu_);
  // Runs `change` on `e` while the reader is not reading it.
  void Update(SampledEvent& e, const std::function<void(SampledEvent&)>& change) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    change(e);
  }
  // After this returns the reader holds no reference to `e`.
  void Remove(const SampledEvent& e) EXCLUDES(mu_);

  uint64_t samples() const { return samples_.load(std::memory_order_relaxed); }

  // Rings wake the reader only once a quarter full; it drains them all
  // this often as well, so a lone hit waits at most this long.
  static constexpr int kDrainMs = 10;

 private:
  void Loop() EXCLUDES(mu_);
  void Drain(SampledEvent& e) REQUIRES(mu_);

  HitSink& sink_;
  arch::ScopedFd epoll_;
  arch::ScopedFd wake_;  // eventfd: stop the thread
  arch::ScopedFd kick_;  // eventfd: the first ring came, start the drain timer
  Mutex mu_;             // held while a ring is read
  std::unordered_map<int, std::shared_ptr<SampledEvent>> events_ GUARDED_BY(mu_);  // by fd
  std::atomic<uint64_t> samples_{0};
  std::thread thread_;
};

}  // namespace hwwatch::daemon
