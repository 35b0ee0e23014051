// Spreads one request's per-thread kernel work over a few threads: the
// perf_event_open, attach and close of each thread of a watched process.
// The kernel accounts a task's breakpoints under that task's own mutex and
// a lock every task target takes shared (the seed's sharded scheme), so
// events on different threads open and close side by side.
//
// Where the work for an index is cheapest on one CPU, the caller says
// which: installing a perf event on a thread that last ran on another CPU
// interrupts that CPU (perf_install_in_context's cross-call; 2 to 4 times
// the open's cost on this project's hosts). The indices of one CPU are
// then worked on by one thread at a time, which moves itself to that CPU
// for them and back afterwards.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <cstddef>
#include <functional>

namespace hwwatch::daemon {

class FanOut {
 public:
  // `helpers` threads besides each caller (0: the caller does it all).
  explicit FanOut(unsigned helpers);
  ~FanOut();
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;

  // One helper per CPU beyond the first, at most 7.
  static unsigned DefaultHelpers();

  // fn(i) for every i in [0, n), once each, and returns when all are done.
  // With `cpu_of`, index i is done on CPU cpu_of(i) where the thread may
  // run there (-1: anywhere). The caller takes indices too, so work from
  // callers at once never waits on a busy helper. Fewer than 2 * kMinShare
  // indices: the caller alone, where it runs. fn must not throw.
  void ForEach(size_t n, const std::function<void(size_t)>& fn,
               const std::function<int(size_t)>& cpu_of = nullptr);

  // Fewer indices than this per thread are not worth a hand-off.
  static constexpr size_t kMinShare = 32;

 private:
  const unsigned helpers_;
  boost::asio::thread_pool pool_;
};

}  // namespace hwwatch::daemon
