// A big-reader lock: the equivalent of the kernel's per-CPU reader-writer
// semaphore (percpu_rw_semaphore) that replaced the seed's rwlock.
//
// Readers are the common path (every task-target operation). Each reader
// marks itself in one of many counters, each on its own cache line, chosen
// by the reading thread, so readers on different threads do not bounce one
// shared line between cores. A writer (a CPU-target operation, a snapshot)
// raises a flag every reader checks and waits for all counters to drain:
// writes are slow, reads are cheap, as in the kernel.
//
// A capability for Clang's thread-safety analysis: lock()/unlock() take it
// exclusive, lock_shared()/unlock_shared() shared.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <thread>

#include "daemon/thread_annotations.h"

namespace hwwatch::engine {

class CAPABILITY("mutex") BrLock {
 public:
  static constexpr size_t kSlots = 64;

  void lock_shared() ACQUIRE_SHARED() {
    auto& slot = readers_[ThreadSlot()].count;
    for (;;) {
      // seq_cst on both sides: either the writer sees our count, or we see
      // its flag (Dekker).
      slot.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_seq_cst)) return;
      slot.fetch_sub(1, std::memory_order_seq_cst);
      writer_.wait(true, std::memory_order_seq_cst);
    }
  }

  void unlock_shared() RELEASE_SHARED() {
    readers_[ThreadSlot()].count.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Holds writers_ from here until unlock() (Clang accepts that in the
  // functions annotated as acquiring and releasing the BrLock).
  void lock() ACQUIRE() {
    writers_.lock();
    writer_.store(true, std::memory_order_seq_cst);
    for (auto& r : readers_) {
      while (r.count.load(std::memory_order_seq_cst) != 0) {
        // Readers hold the lock for a few hundred nanoseconds.
        std::this_thread::yield();
      }
    }
  }

  void unlock() RELEASE() {
    writer_.store(false, std::memory_order_seq_cst);
    writer_.notify_all();
    writers_.unlock();
  }

  // A thread's counter: fixed for the thread's life (so unlock_shared finds
  // the counter lock_shared used), spread round-robin over the slots. Also
  // used to spread other per-reader counters.
  static size_t ThreadSlot() {
    static std::atomic<size_t> next{0};
    thread_local const size_t slot = next.fetch_add(1, std::memory_order_relaxed) % kSlots;
    return slot;
  }

 private:
  struct alignas(64) Reader {
    std::atomic<int> count{0};
  };
  std::array<Reader, kSlots> readers_{};
  alignas(64) std::atomic<bool> writer_{false};
  hwwatch::Mutex writers_;  // one writer at a time
};

}  // namespace hwwatch::engine
