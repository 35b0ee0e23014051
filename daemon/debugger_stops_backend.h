// Stops for a debugger that already traces the thread: perf events that
// raise SIGTRAP there (si_perf_data = the reservation), which the debugger
// takes. A debugger that lets go of the thread (detach, exit, SIGKILL)
// would leave it to die of the next one, so each event carries the
// capture program's guard: it lets a trap through only while that
// debugger still traces the thread. On Linux 6.10 and later its "no"
// suppresses the SIGTRAP; the daemon then disarms the watch (told by the
// guard at the trap, or by its own look at TracerPid each sweep, which is
// all an older kernel or a daemon without BPF has).
#pragma once

#include "daemon/bpf_capture.h"
#include "daemon/perf_events_backend.h"

namespace hwwatch::daemon {

class DebuggerStopsBackend final : public PerfEventsBackend {
 public:
  // `capture` null: no guard (the sweep alone).
  DebuggerStopsBackend(const arch::HostCapabilities& caps, engine::Engine& engine, FanOut& fan_out,
                       BpfCapture* capture)
      : PerfEventsBackend(caps, engine, fan_out), capture_(capture) {}

  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;

 private:
  // Guards the arm's events from `first` on.
  std::optional<Problem> GuardEvents(ThreadArm& arm, uint64_t group, size_t first);

  BpfCapture* capture_;
};

}  // namespace hwwatch::daemon
