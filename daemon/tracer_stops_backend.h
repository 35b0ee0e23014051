// Stop delivery on threads nobody else traces: a SIGTRAP nobody waits for
// would kill the target, so the tracer traces the thread and opens the perf
// stop events itself (in its own file table: see tracer.h); it takes each
// trap, reports the hit and lets the thread go on. Accounted in the engine
// like any perf event.
#pragma once

#include "arch/capabilities.h"
#include "daemon/backend.h"
#include "daemon/tracer.h"

namespace hwwatch::daemon {

// What the tracer does on a thread for `spec` (slots: ptrace's indices).
TraceUse TraceUseFor(arch::Arch arch, const ArmSpec& spec);

class TracerStopsBackend final : public Backend {
 public:
  TracerStopsBackend(const arch::HostCapabilities& caps, engine::Engine& engine, Tracer& tracer)
      : caps_(caps), engine_(engine), tracer_(tracer) {}

  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow& how) override;
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;
  void Follow(pid_t tgid, const ThreadArm& first, const ArmSpec& spec) override;
  void Unfollow(pid_t tgid, uint64_t group) override;
  uint64_t Hits(const ThreadArm&) const override { return 0; }

 private:
  const arch::HostCapabilities& caps_;
  engine::Engine& engine_;
  Tracer& tracer_;
};

}  // namespace hwwatch::daemon
