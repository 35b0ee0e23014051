// Per-uid quotas: how many registers (summed weights) one non-root uid may
// hold at once, so that one user cannot starve the host. Charged before a
// watch is armed, so concurrent requests of one uid cannot overshoot it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <unordered_map>

#include "daemon/error.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

class Quota {
 public:
  explicit Quota(unsigned per_uid) : per_uid_(per_uid) {}

  // Charges `weight` registers to `uid` (root: never refused), or says why not.
  std::optional<Problem> Charge(uid_t uid, unsigned weight) EXCLUDES(mu_);
  // A modify from `old_weight` to `new_weight` registers: checked as if the
  // old watch were given back; charges only the increase, so that the uid
  // never holds more than its quota while the modify is under way. The
  // caller then refunds old - new on success, or new - old on failure.
  std::optional<Problem> ChargeModify(uid_t uid, unsigned old_weight, unsigned new_weight)
      EXCLUDES(mu_);
  void Refund(uid_t uid, unsigned weight) EXCLUDES(mu_);

 private:
  Problem Refused(uid_t uid, unsigned held, unsigned weight, bool modify) const;

  const unsigned per_uid_;
  Mutex mu_;
  std::unordered_map<uid_t, unsigned> held_ GUARDED_BY(mu_);
};

}  // namespace hwwatch::daemon
