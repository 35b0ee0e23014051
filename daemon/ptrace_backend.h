// The ptrace backend: the tracer traces the thread and writes its debug
// registers itself, in the indices the ptrace slot bank picks (or the
// client chose); every hit stops the thread, the tracer reads the value,
// reports and resumes. Registers written this way outlive the tracer, so
// the tracer clears them before it lets go and journals them for a restart.
#pragma once

#include "daemon/ptrace_slots.h"
#include "daemon/traced_backend.h"

namespace hwwatch::daemon {

class PtraceBackend final : public TracedBackend {
 public:
  PtraceBackend(const arch::HostCapabilities& caps, PtraceSlotBank& bank, Tracer& tracer)
      : TracedBackend(caps, tracer), bank_(bank) {}

  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow& how) override;
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::vector<std::optional<Problem>> ArmAll(std::vector<ThreadArm>& arms,
                                             const ArmSpec& spec) override;
  void DisarmAll(std::vector<ThreadArm>& arms) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;
  bool AccountsItself() const override { return true; }

 private:
  // Gives `slots` back to the bank and takes `back` again (a rollback).
  void Restore(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots,
               arch::SlotType back_type, const std::vector<unsigned>& back);

  PtraceSlotBank& bank_;
};

}  // namespace hwwatch::daemon
