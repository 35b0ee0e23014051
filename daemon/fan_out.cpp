#include "daemon/fan_out.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <map>
#include <memory>
#include <thread>
#include <vector>

namespace hwwatch::daemon {

namespace {

// Indices are taken this many at a time (one atomic step per chunk).
constexpr size_t kChunk = 8;

// The indices to do on one CPU (-1: anywhere), taken in chunks.
struct Bucket {
  int cpu = -1;
  std::vector<size_t> indices;
  std::atomic<size_t> next{0};
};

// A thread's CPU mask while it works on buckets: moved to each bucket's
// CPU, and put back as it was at the end.
class Placement {
 public:
  Placement() { saved_ = sched_getaffinity(0, sizeof mask_, &mask_) == 0; }
  ~Placement() {
    if (moved_) (void)sched_setaffinity(0, sizeof mask_, &mask_);
  }
  void MoveTo(int cpu) {
    if (cpu < 0 || cpu == on_ || !saved_ || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mask_)) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0) {
      moved_ = true;
      on_ = cpu;
    }
  }

 private:
  cpu_set_t mask_;
  bool saved_ = false;
  bool moved_ = false;
  int on_ = -1;
};

// What the caller and its helpers share. A helper may start after the
// caller has returned (it was busy with another caller's work): it finds
// nothing left, and the state lives until it lets go of it.
struct Shared {
  Shared(size_t n, const std::function<void(size_t)>& fn, size_t buckets)
      : n(n), fn(fn), buckets(buckets) {}
  const size_t n;
  const std::function<void(size_t)>& fn;  // valid while done < n
  std::vector<Bucket> buckets;
  std::atomic<size_t> done{0};

  // Every bucket from `first` on, in turn, until none has indices left.
  void Drain(size_t first) {
    Placement where;
    for (size_t k = 0; k < buckets.size(); ++k) {
      Bucket& b = buckets[(first + k) % buckets.size()];
      for (;;) {
        const size_t from = b.next.fetch_add(kChunk, std::memory_order_relaxed);
        if (from >= b.indices.size()) break;
        where.MoveTo(b.cpu);
        const size_t to = std::min(b.indices.size(), from + kChunk);
        for (size_t i = from; i < to; ++i) fn(b.indices[i]);
        if (done.fetch_add(to - from, std::memory_order_acq_rel) + (to - from) == n) {
          done.notify_all();
        }
      }
    }
  }
};

}  // namespace

FanOut::FanOut(unsigned helpers) : helpers_(helpers), pool_(std::max(1u, helpers)) {}

FanOut::~FanOut() { pool_.join(); }

unsigned FanOut::DefaultHelpers() {
  const unsigned cpus = std::thread::hardware_concurrency();
  return std::min(7u, cpus > 1 ? cpus - 1 : 0u);
}

void FanOut::ForEach(size_t n, const std::function<void(size_t)>& fn,
                     const std::function<int(size_t)>& cpu_of) {
  const size_t shares = n / kMinShare;  // threads that would get a full share
  const size_t most = shares > 1 ? std::min<size_t>(helpers_, shares - 1) : 0;
  if (most == 0) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // One bucket per CPU named (the caller's own CPU first), or one for all.
  std::map<int, std::vector<size_t>> by_cpu;
  for (size_t i = 0; i < n; ++i) by_cpu[cpu_of ? cpu_of(i) : -1].push_back(i);
  const int here = sched_getcpu();
  auto shared = std::make_shared<Shared>(n, fn, by_cpu.size());
  size_t k = 0;
  if (auto it = by_cpu.find(here); it != by_cpu.end()) {
    shared->buckets[k].cpu = here;
    shared->buckets[k++].indices = std::move(it->second);
    by_cpu.erase(it);
  }
  for (auto& [cpu, indices] : by_cpu) {
    shared->buckets[k].cpu = cpu;
    shared->buckets[k++].indices = std::move(indices);
  }
  // With CPUs named, a helper per other CPU, each starting at its own (two
  // threads on one CPU only take turns); else all of them on the one bucket.
  const size_t helpers = cpu_of ? std::min(most, shared->buckets.size() - 1) : most;
  for (size_t h = 0; h < helpers; ++h) {
    const size_t first = cpu_of ? h + 1 : 0;
    boost::asio::post(pool_, [shared, first] { shared->Drain(first); });
  }
  shared->Drain(0);
  // The helpers' last indices.
  for (size_t d = shared->done.load(std::memory_order_acquire); d < n;
       d = shared->done.load(std::memory_order_acquire)) {
    shared->done.wait(d, std::memory_order_acquire);
  }
}

}  // namespace hwwatch::daemon
