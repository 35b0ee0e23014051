// Stop delivery on threads nobody else traces: a SIGTRAP nobody waits for
// would kill the target, so the tracer traces the thread and opens the perf
// stop events itself (in its own file table: see tracer.h); it takes each
// trap, reports the hit and lets the thread go on. Accounted in the engine
// like any perf event.
#pragma once

#include "daemon/traced_backend.h"

namespace hwwatch::daemon {

class TracerStopsBackend final : public TracedBackend {
 public:
  TracerStopsBackend(const arch::HostCapabilities& caps, engine::Engine& engine, Tracer& tracer)
      : TracedBackend(caps, tracer), engine_(engine) {}

  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow& how) override;
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;

 private:
  engine::Engine& engine_;
};

}  // namespace hwwatch::daemon
