// Every Event is built here: stamped with the wall clock at the moment it
// is made, in the daemon's own vocabulary (daemon/types.h).
#pragma once

#include <cstdint>
#include <string>

#include "daemon/types.h"

namespace hwwatch::daemon {

Event HitEvent(const RawHit& hit);
Event LostEvent(uint64_t count);
Event ThreadAddedEvent(uint64_t reservation, pid_t pid, pid_t tid);
Event ExecedEvent(uint64_t reservation, pid_t pid);
Event ExitedEvent(uint64_t reservation, pid_t tid);
// `totals`: its final hits, delivered, filtered and lost.
Event ReleasedEvent(uint64_t reservation, std::string why, const ReservationInfo& totals);

// The same event told to another sharer of the registers: reservation ids
// of hits and thread events become `reservation`.
Event ForMember(const Event& e, uint64_t reservation);

}  // namespace hwwatch::daemon
