// Validation of requests against what this host can do. Pure: no system
// calls; the existence of targets is checked elsewhere.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "arch/capabilities.h"
#include "arch/region.h"
#include "daemon/error.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

// Highest user-space address + 1 on this architecture (x86-64: 47-bit
// user half; arm64: 48-bit VA, the kernel's TASK_SIZE_64 without LVA).
uint64_t UserAddressLimit(arch::Arch a);

// The longest lease a reservation may ask for.
inline constexpr int64_t kMaxLeaseSeconds = 24 * 3600;

Result<TargetSpec> CheckTarget(const TargetSpec& t, unsigned cpus);

// Parses a watch condition, "value OP N" or "value & MASK OP N" (the
// masked value may be parenthesized), for a watch of `length` bytes; the
// error names what is wrong.
Result<Condition> ParseCondition(std::string_view text, uint64_t length);

// Checks the watch for the target and plans its registers. Task targets
// take user-space addresses only; CPU targets may watch kernel addresses.
Result<WatchSpec> CheckWatch(const WatchRequest& w, const TargetSpec& target,
                             const arch::HostCapabilities& caps);

// How a reservation reaches the registers, decided from the request.
struct ArmHow {
  // The ptrace backend: the daemon traces the thread and writes its
  // registers, in `slot` (first register) or free ones.
  bool ptrace = false;
  std::optional<unsigned> slot;
  // Perf stop delivery on threads nobody else traces: the daemon traces
  // them and takes the SIGTRAPs (decided later, from the target's state).
  bool daemon_stops = false;
  Delivery delivery = Delivery::kSamples;  // never kDefault
  bool traced() const { return ptrace || daemon_stops; }
};

// A reserve request's lease, target, backend, slot and delivery, checked
// in that order, with the delivery resolved (perf samples by default;
// ptrace always stops). The watch is checked by CheckWatch.
struct CheckedReserve {
  TargetSpec target;
  ArmHow how;
};
Result<CheckedReserve> CheckReserve(const ReserveArgs& req, unsigned cpus);

// A refused watch as the caller sees it: a region too large for the
// registers gets its Refusal (of `type`), other problems go as they are.
Problem WatchProblem(Problem p, std::optional<arch::SlotType> type);

}  // namespace hwwatch::daemon
