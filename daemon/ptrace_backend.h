// The ptrace backend: the tracer traces the thread and writes its debug
// registers itself, in the indices the ptrace slot bank picks (or the
// client chose); every hit stops the thread, the tracer reads the value,
// reports and resumes. Registers written this way outlive the tracer, so
// the tracer clears them before it lets go and journals them for a restart.
#pragma once

#include "arch/capabilities.h"
#include "daemon/backend.h"
#include "daemon/ptrace_slots.h"
#include "daemon/tracer.h"

namespace hwwatch::daemon {

class PtraceBackend final : public Backend {
 public:
  PtraceBackend(const arch::HostCapabilities& caps, PtraceSlotBank& bank, Tracer& tracer)
      : caps_(caps), bank_(bank), tracer_(tracer) {}

  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow& how) override;
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where, const ArmSpec& spec) override;
  void Disarm(ThreadArm& arm) override;
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                              const WatchSpec& from, const ArmSpec& to) override;
  bool AccountsItself() const override { return true; }
  void Follow(pid_t tgid, const ThreadArm& first, const ArmSpec& spec) override;
  void Unfollow(pid_t tgid, uint64_t group) override;
  uint64_t Hits(const ThreadArm&) const override { return 0; }

 private:
  // Gives `slots` back to the bank and takes `back` again (a rollback).
  void Restore(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots,
               arch::SlotType back_type, const std::vector<unsigned>& back);

  const arch::HostCapabilities& caps_;
  PtraceSlotBank& bank_;
  Tracer& tracer_;
};

}  // namespace hwwatch::daemon
