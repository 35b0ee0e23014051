#include "daemon/fan_out.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>

namespace hwwatch::daemon {

namespace {

// Indices are taken this many at a time (one atomic step per chunk).
constexpr size_t kChunk = 8;

// What the caller and its helpers share. A helper may start after the
// caller has returned (it was busy with another caller's work): it finds
// nothing left, and the state lives until it lets go of it.
struct Shared {
  Shared(size_t n, const std::function<void(size_t)>& fn) : n(n), fn(fn) {}
  const size_t n;
  const std::function<void(size_t)>& fn;  // valid while done < n
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};

  void Drain() {
    for (;;) {
      const size_t first = next.fetch_add(kChunk, std::memory_order_relaxed);
      if (first >= n) return;
      const size_t last = std::min(n, first + kChunk);
      for (size_t i = first; i < last; ++i) fn(i);
      if (done.fetch_add(last - first, std::memory_order_acq_rel) + (last - first) == n) {
        done.notify_all();
      }
    }
  }
};

}  // namespace

FanOut::FanOut(unsigned helpers) : helpers_(helpers), pool_(std::max(1u, helpers)) {}

FanOut::~FanOut() { pool_.join(); }

unsigned FanOut::DefaultHelpers() {
  const unsigned cpus = std::thread::hardware_concurrency();
  return std::min(3u, cpus > 1 ? cpus - 1 : 0u);
}

void FanOut::ForEach(size_t n, const std::function<void(size_t)>& fn) {
  const size_t shares = n / kMinShare;  // threads that would get a full share
  const size_t helpers = shares > 1 ? std::min<size_t>(helpers_, shares - 1) : 0;
  if (helpers == 0) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  auto shared = std::make_shared<Shared>(n, fn);
  for (size_t h = 0; h < helpers; ++h) {
    boost::asio::post(pool_, [shared] { shared->Drain(); });
  }
  shared->Drain();
  // The helpers' last indices.
  for (size_t d = shared->done.load(std::memory_order_acquire); d < n;
       d = shared->done.load(std::memory_order_acquire)) {
    shared->done.wait(d, std::memory_order_acquire);
  }
}

}  // namespace hwwatch::daemon
