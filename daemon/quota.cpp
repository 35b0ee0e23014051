#include "daemon/quota.h"

#include <string>

namespace hwwatch::daemon {

std::optional<Problem> Quota::Charge(uid_t uid, unsigned weight) {
  MutexLock lock(mu_);
  unsigned& held = held_[uid];
  if (uid != 0 && held + weight > per_uid_) return Refused(uid, held, weight, false);
  held += weight;
  return std::nullopt;
}

std::optional<Problem> Quota::ChargeModify(uid_t uid, unsigned old_weight, unsigned new_weight) {
  MutexLock lock(mu_);
  unsigned& held = held_[uid];
  const unsigned others = held - old_weight;  // the uid's other registers
  if (uid != 0 && others + new_weight > per_uid_) return Refused(uid, others, new_weight, true);
  if (new_weight > old_weight) held += new_weight - old_weight;
  return std::nullopt;
}

void Quota::Refund(uid_t uid, unsigned weight) {
  MutexLock lock(mu_);
  held_[uid] -= weight;
}

Problem Quota::Refused(uid_t uid, unsigned held, unsigned weight, bool modify) const {
  Refusal r;
  r.reason = Refusal::Reason::kQuotaExceeded;
  r.quota = per_uid_;
  r.held = held;
  r.weight = weight;
  return MakeProblem(
      Code::kResourceExhausted,
      "uid " + std::to_string(uid) + " holds " + std::to_string(held) + " of its " +
          std::to_string(per_uid_) + " registers" +
          (modify ? " besides this reservation; its new watch needs " : "; this watch needs ") +
          std::to_string(weight),
      std::move(r));
}

}  // namespace hwwatch::daemon
