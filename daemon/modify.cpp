// Modify: a reservation gets a new watch on the same target, admitted as
// the kernel would (as if the old watch were released), and atomic to the
// caller: every thread moves to the new watch, or none does and the old
// one stays armed and accounted.
#include <spdlog/spdlog.h>

#include "daemon/accounting.h"
#include "daemon/reservations.h"

namespace hwwatch::daemon {

Result<ReservationInfo> ReservationManager::Modify(const Peer& caller, uint64_t id,
                                                   const WatchRequest& request) {
  MutexLock lock(mu_);
  Entry* found = Find(caller, id);
  if (found == nullptr) return NoSuchReservation(id);
  Entry& e = *found;
  if (const size_t sharers = membership_.Count(e.group->id); sharers > 1) {
    return MakeProblem(Code::kFailedPrecondition,
                       "reservation " + std::to_string(id) + " shares its registers with " +
                           std::to_string(sharers - 1) +
                           " other reservation(s); release it and reserve the new watch instead");
  }
  auto watch = CheckWatch(request, e.info.target, caps_);
  if (!watch) return WatchProblem(std::move(watch).error(), std::nullopt);
  if (auto no = CheckFilters(*watch, e.spec.how)) return std::move(*no);
  const unsigned weight = watch->weight();
  const unsigned old_weight = e.weight();
  if (auto no = quota_.ChargeModify(e.uid, old_weight, weight)) return std::move(*no);
  ArmSpec to = e.spec;
  to.watch = &watch.value();
  to.type = arch::SlotTypeOf(watch->region.access);
  Backend& backend = *e.group->backend;
  std::optional<Problem> no;
  if (!backend.AccountsItself()) no = MoveInEngine(e, to.type, weight);
  if (!no) {
    no = backend.Move(e.group->arms, e.info.target, e.watch, to);
    if (no && !backend.AccountsItself()) RestoreInEngine(e, e.group->arms.size());
  }
  if (no) {
    if (weight > old_weight) quota_.Refund(e.uid, weight - old_weight);
    return std::move(*no);
  }
  if (old_weight > weight) quota_.Refund(e.uid, old_weight - weight);
  CommitModify(e, request, std::move(watch.value()), to);
  ReservationInfo out = e.info;
  out.sharers = static_cast<unsigned>(membership_.Count(e.group->id));
  return out;
}

std::optional<Problem> ReservationManager::MoveInEngine(Entry& e, arch::SlotType type,
                                                        unsigned weight) {
  // Admitted as the kernel would, on every thread: as if the old watch
  // were released. One refusal puts back the threads already changed.
  std::vector<ThreadArm>& arms = e.group->arms;
  for (size_t i = 0; i < arms.size(); ++i) {
    const engine::Target where = ToEngine(WhereArmed(e.info.target, arms[i]));
    if (auto no = engine_.Modify(arms[i].engine_id, {where, type, weight})) {
      RestoreInEngine(e, i);
      return EngineProblem(*no);
    }
  }
  return std::nullopt;
}

void ReservationManager::RestoreInEngine(const Entry& e, size_t arms) {
  for (size_t k = 0; k < arms; ++k) {
    const ThreadArm& arm = e.group->arms[k];
    const engine::Target where = ToEngine(WhereArmed(e.info.target, arm));
    if (engine_.Modify(arm.engine_id, {where, e.spec.type, e.weight()})) {
      spdlog::error("reservation {}: the engine refused to restore it after a failed modify",
                    e.info.id);
    }
  }
}

void ReservationManager::CommitModify(Entry& e, const WatchRequest& request, WatchSpec watch,
                                      const ArmSpec& to) {
  e.watch = std::move(watch);
  e.spec = to;
  e.spec.watch = &e.watch;
  // Now a different watch: shareable under its new key.
  Group& g = *e.group;
  if (!g.key.empty()) {
    if (auto old = groups_.find(g.key); old != groups_.end() && old->second == e.group) {
      groups_.erase(old);
    }
    g.key = ShareKey(e.info.target, request, e.spec.how, e.spec.capture);
    groups_.emplace(g.key, e.group);
  }
  e.info.watch = request;
  e.info.weight = e.weight();
  e.info.slot_type = e.spec.type;
  DescribeRegisters(e);
  if (g.followed_tgid != 0 && !g.arms.empty()) {
    // What the tracer arms on threads to come.
    g.backend->Unfollow(g.followed_tgid, g.id);
    g.backend->Follow(g.followed_tgid, g.arms.front(), e.spec);
  }
}

}  // namespace hwwatch::daemon
