// Who shares which registers, and which session owns each reservation: the
// one record of both. Reservations of the same watch on the same target
// share one group of registers; the group's id is its first member's id
// (samples and si_perf_data carry it). The manager changes membership;
// the event hub reads it to route events.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

class Membership {
 public:
  // `id` (owned by `session`) uses the registers of `group` (its own id
  // when it is the first).
  void Join(uint64_t group, uint64_t id, uint64_t session) EXCLUDES(mu_);
  // `id` is gone; returns how many members its group has left.
  size_t Leave(uint64_t id) EXCLUDES(mu_);
  // A new owner (0: orphaned, nobody's streams get its events).
  void SetSession(uint64_t id, uint64_t session) EXCLUDES(mu_);

  std::vector<uint64_t> Members(uint64_t group) const EXCLUDES(mu_);
  size_t Count(uint64_t group) const EXCLUDES(mu_);
  std::optional<uint64_t> SessionOf(uint64_t id) const EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, uint64_t> session_ GUARDED_BY(mu_);               // id -> session
  std::unordered_map<uint64_t, uint64_t> group_ GUARDED_BY(mu_);                 // id -> group
  std::unordered_map<uint64_t, std::vector<uint64_t>> members_ GUARDED_BY(mu_);  // by group
};

}  // namespace hwwatch::daemon
