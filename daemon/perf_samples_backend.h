// perf breakpoint events that write a sample per hit into a ring buffer
// (the region's first register owns the ring, the others write into it),
// drained by the sample reader; the target never stops.
#pragma once

#include "daemon/perf_events_backend.h"
#include "daemon/sample_reader.h"

namespace hwwatch::daemon {

class PerfSamplesBackend final : public PerfEventsBackend {
 public:
  PerfSamplesBackend(const arch::HostCapabilities& caps, engine::Engine& engine, FanOut& fan_out,
                     SampleReader& reader)
      : PerfEventsBackend(caps, engine, fan_out), reader_(reader) {}

  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;

 private:
  SampleReader& reader_;
};

}  // namespace hwwatch::daemon
