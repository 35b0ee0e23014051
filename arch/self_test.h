// Hardware self-test: does a debug register armed by each backend really
// fire on this machine? A child of the caller writes a watched word a few
// times; the result is `fires`, `never fires` (the kernel accepted the
// register but no exception arrived: a hypervisor that does not deliver
// debug exceptions) or `unavailable` (the backend could not be armed).
// Strictly bounded by the budget; every child is killed and reaped.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace hwwatch::arch {

enum class Backend { kPerf, kPtrace };
enum class SelfTestOutcome { kFires, kNeverFires, kUnavailable };

std::string_view BackendName(Backend b);                  // "perf", "ptrace"
std::string_view SelfTestOutcomeName(SelfTestOutcome o);  // "fires", "never fires", "unavailable"

struct SelfTestResult {
  Backend backend = Backend::kPerf;
  SelfTestOutcome outcome = SelfTestOutcome::kUnavailable;
  std::string detail;   // human-readable: counts seen, or why unavailable
  unsigned writes = 0;  // writes the child made to the watched word
  unsigned hits = 0;    // hits the backend saw
};

// Runs the perf test (a counting PERF_TYPE_BREAKPOINT on the child) and the
// ptrace test (the caller traces the child and arms slot 0), in that order,
// sharing `budget`. Forks: the children run only async-signal-safe code,
// so it is safe in a multithreaded daemon, but the caller must not reap
// unknown children (waitpid(-1)) meanwhile.
std::vector<SelfTestResult> RunSelfTest(std::chrono::milliseconds budget);

}  // namespace hwwatch::arch
