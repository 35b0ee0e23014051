// perf breakpoint events with the capture program attached (see
// bpf_capture.h): the value is read at the trap, filters run there, and
// hits reach the daemon through one BPF ring, not a perf ring per
// reservation. Process targets use inherited events, so the kernel arms
// every new thread at clone, before its first instruction.
#pragma once

#include "daemon/bpf_capture.h"
#include "daemon/perf_events_backend.h"

namespace hwwatch::daemon {

class BpfSamplesBackend final : public PerfEventsBackend {
 public:
  BpfSamplesBackend(const arch::HostCapabilities& caps, engine::Engine& engine, FanOut& fan_out,
                    BpfCapture& capture)
      : PerfEventsBackend(caps, engine, fan_out), capture_(capture) {}

  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;
  bool Inherits() const override { return true; }
  std::optional<Fates> FatesOf(uint64_t group) const override;

 private:
  // The capture program on an opened event: through a link whose cookie is
  // `group`, or, for a group whose process's events are mapped (the arm
  // inherits), on the event itself, with an empty fd in the arm's links.
  arch::Result<arch::ScopedFd> Attach(int perf_fd, uint64_t group, bool mapped);
  BpfCapture& capture_;
};

}  // namespace hwwatch::daemon
