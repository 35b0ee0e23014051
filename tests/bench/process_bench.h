// P9 of hwwatch-bench rpc: one watch on every thread of a many-threaded
// process, armed and released through hwwatchd (a PROCESS target), against
// perf_event_open + close called directly on each of its threads, and
// against what a debugger does through ptrace on each thread.
#pragma once

#include <cstdint>
#include <string>

namespace hwwatch::bench {

struct ProcessTargetFigures {
  unsigned threads = 0;  // threads the target process started
  unsigned tasks = 0;    // threads armed: those plus its main thread
  // Medians over the repeats (perf sides: 5 turns each per repeat),
  // microseconds; 0 when not measured.
  double daemon_count_us = 0;    // Reserve(pid, DELIVERY_COUNT) + Release
  double daemon_samples_us = 0;  // the same with the default (samples) delivery
  double direct_us = 0;          // perf_event_open on every task, then close all
  double direct_local_us = 0;    // the same, each opened from the CPU its task last ran on
  double ptrace_us = 0;          // seize, interrupt, wait, arm, disarm, detach
  double ptrace_held_us = 0;     // the same in two stops, the watch held between
  double daemon_ptrace_us = 0;   // Reserve(pid, BACKEND_PTRACE) + Release through hwwatchd
  // Attempts refused a slot (registers held outside this bench) and retried.
  uint64_t refusals = 0;
  // Nonempty when a side kept being refused and was given up.
  std::string refused;
  // Nonempty: why ptrace_us and ptrace_held_us were not measured.
  std::string ptrace_not_measured;
  // Nonempty when P9 could not run at all.
  std::string error;
};

// Forks a process with `threads` blocked threads (64 KiB stacks), measures
// every side `repeat` times (after one warm-up) and kills and reaps the
// process, whatever happens. Never throws: failures land in the result.
ProcessTargetFigures MeasureProcessTarget(const std::string& socket, unsigned threads,
                                          unsigned repeat);

}  // namespace hwwatch::bench
