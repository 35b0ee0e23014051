// Lock rules the compiler checks: Clang's thread-safety attributes behind
// small macros (they expand to nothing elsewhere), and a mutex the analysis
// understands (libstdc++'s std::mutex carries no annotations).
//
// Annotate every member a lock guards with GUARDED_BY(mu_) and every
// function that must be called with a lock held with REQUIRES(mu_); the
// clang tree builds with -Wthread-safety -Werror, so a broken rule fails
// the build. The daemon's lock order is written once, in daemon/README.md.
#pragma once

#include <mutex>
#include <shared_mutex>

#if defined(__clang__)
#define HWW_TSA(x) __attribute__((x))
#else
#define HWW_TSA(x)
#endif

#define CAPABILITY(x) HWW_TSA(capability(x))
#define SCOPED_CAPABILITY HWW_TSA(scoped_lockable)
// absl/base/internal/thread_annotations.h (which gRPC's headers include)
// defines these five names too, with the same meaning: whichever header
// comes first defines them (a second, different #define is an error with
// -Werror when it is ours, silent in absl's system header).
#ifndef GUARDED_BY
#define GUARDED_BY(x) HWW_TSA(guarded_by(x))
#endif
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) HWW_TSA(pt_guarded_by(x))
#endif
#ifndef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) HWW_TSA(acquired_before(__VA_ARGS__))
#endif
#ifndef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) HWW_TSA(acquired_after(__VA_ARGS__))
#endif
#define REQUIRES(...) HWW_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) HWW_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) HWW_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) HWW_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) HWW_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) HWW_TSA(release_shared_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) HWW_TSA(try_acquire_capability(__VA_ARGS__))
#define EXCLUDES(...) HWW_TSA(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) HWW_TSA(lock_returned(x))
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS HWW_TSA(no_thread_safety_analysis)
#endif

namespace hwwatch {

// std::mutex, visible to the analysis.
class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope (std::lock_guard, annotated).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

}  // namespace hwwatch
