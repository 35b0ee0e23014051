// The ptrace backend's slots, accounted per thread and debug register index.
//
// The kernel keeps a register written through ptrace registered (disabled)
// after it is cleared, until the thread execs or ends, so the bank keeps it
// admitted in the engine too, and later ptrace watches reuse it first: it
// costs no new slot. The bank has its own lock (taken inside the manager's,
// before the engine's).
#pragma once

#include <sys/types.h>

#include <array>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "arch/capabilities.h"
#include "daemon/engine/constraints.h"
#include "daemon/error.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

class PtraceSlotBank {
 public:
  PtraceSlotBank(const arch::HostCapabilities& caps, engine::Engine& engine)
      : caps_(caps), engine_(engine) {}

  // Marks `weight` free indices of `tid` in use (`first` first), admitting
  // in the engine those the kernel does not hold for it yet; registered
  // ones are picked before unregistered ones.
  Result<std::vector<unsigned>> Take(pid_t tid, arch::SlotType type, unsigned weight,
                                     std::optional<unsigned> first) EXCLUDES(mu_);
  // The same for exactly `slots` (what the tracer armed already).
  Result<std::vector<unsigned>> TakeExactly(pid_t tid, arch::SlotType type,
                                            const std::vector<unsigned>& slots) EXCLUDES(mu_);
  // No longer in use (still registered in the kernel).
  void Put(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots) EXCLUDES(mu_);
  // The thread ended or exec'd: the kernel freed its registers.
  void Forget(pid_t tid) EXCLUDES(mu_);
  // Threads with registered slots and none in use (candidates for Forget
  // once they have ended).
  std::vector<pid_t> Idle() const EXCLUDES(mu_);

 private:
  struct Bank {
    std::array<engine::ReservationId, 16> registered{};  // 0: never written
    std::array<bool, 16> in_use{};
  };
  using Key = std::pair<pid_t, arch::SlotType>;
  // x86's one mixed pool has one bank.
  Key KeyOf(pid_t tid, arch::SlotType type) const;
  unsigned Count(arch::SlotType type) const;
  Result<std::vector<unsigned>> Mark(Bank& bank, pid_t tid, arch::SlotType type,
                                     const std::vector<unsigned>& pick) REQUIRES(mu_);

  const arch::HostCapabilities& caps_;
  engine::Engine& engine_;
  mutable Mutex mu_;
  std::map<Key, Bank> banks_ GUARDED_BY(mu_);
};

}  // namespace hwwatch::daemon
