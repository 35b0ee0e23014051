#include "daemon/events.h"

#include <utility>

namespace hwwatch::daemon {

namespace {

template <class Kind>
Event Stamped(Kind kind) {
  Event e;
  clock_gettime(CLOCK_REALTIME, &e.time);
  e.kind = std::move(kind);
  return e;
}

}  // namespace

Event HitEvent(const RawHit& h) {
  return Stamped(Event::Hit{h.group, h.tid, h.ip, h.address, h.slot, h.value, h.old_value,
                            h.value_at_trap, h.cpu});
}

Event LostEvent(uint64_t count) { return Stamped(Event::Lost{count}); }

Event ThreadAddedEvent(uint64_t reservation, pid_t pid, pid_t tid) {
  return Stamped(Event::ThreadAdded{reservation, pid, tid});
}

Event ExecedEvent(uint64_t reservation, pid_t pid) {
  return Stamped(Event::Execed{reservation, pid});
}

Event ExitedEvent(uint64_t reservation, pid_t tid) {
  return Stamped(Event::Exited{reservation, tid});
}

Event ReleasedEvent(uint64_t reservation, std::string why, const ReservationInfo& t) {
  return Stamped(
      Event::Released{reservation, std::move(why), t.hits, t.delivered, t.filtered, t.lost});
}

Event ForMember(const Event& e, uint64_t reservation) {
  Event copy = e;
  if (auto* h = std::get_if<Event::Hit>(&copy.kind)) h->reservation_id = reservation;
  if (auto* t = std::get_if<Event::ThreadAdded>(&copy.kind)) t->reservation_id = reservation;
  if (auto* x = std::get_if<Event::Exited>(&copy.kind)) x->reservation_id = reservation;
  return copy;
}

}  // namespace hwwatch::daemon
