// perf breakpoint events that the daemon opens and holds in its own file
// table: counting (hits are counted, not reported), and stops for a
// debugger that already traces the thread (SIGTRAP with si_perf_data = the
// reservation, taken by that debugger). The kernel writes the registers;
// they go when the descriptors close, so a daemon crash leaves none.
#pragma once

#include "arch/capabilities.h"
#include "daemon/backend.h"
#include "daemon/fan_out.h"

namespace hwwatch::daemon {

class PerfEventsBackend : public Backend {
 public:
  // `fan_out` spreads the threads of a process over a few threads.
  PerfEventsBackend(const arch::HostCapabilities& caps, engine::Engine& engine, FanOut& fan_out)
      : caps_(caps), engine_(engine), fan_out_(fan_out) {}

  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow& how) override;
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  // Each thread's events are its own: armed and closed side by side, each
  // armed from the CPU it last ran on where that is known.
  std::vector<std::optional<Problem>> ArmAll(std::vector<ThreadArm>& arms,
                                             const ArmSpec& spec) override;
  void DisarmAll(std::vector<ThreadArm>& arms) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;
  uint64_t Hits(const ThreadArm& arm) const override;

 protected:
  // Register `i` of `watch` on `where`.
  arch::Result<arch::PerfBreakpoint> Open(const WatchSpec& watch, unsigned i,
                                          const TargetSpec& where,
                                          const arch::PerfOptions& options) const;

  const arch::HostCapabilities& caps_;
  engine::Engine& engine_;
  FanOut& fan_out_;
};

}  // namespace hwwatch::daemon
