// A deliberately simple reference for the engine: it keeps the list of live
// reservations and recomputes every count from it for every decision.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "daemon/engine/constraints.h"

namespace hwwatch::engine::testing {

class ReferenceModel {
 public:
  explicit ReferenceModel(Config c) : c_(std::move(c)) {}

  unsigned Pool(arch::SlotType t) const {
    for (unsigned p = 0; p < c_.pools.size(); ++p) {
      for (auto pt : c_.pools[p].types) {
        if (pt == t) return p;
      }
    }
    return 0;
  }
  unsigned CpuPinned(unsigned pool, unsigned cpu) const {
    unsigned n = 0;
    for (const auto& [id, r] : live_) {
      if (!r.target.is_task() && r.target.cpu == cpu && Pool(r.type) == pool) n += r.weight;
    }
    return n;
  }
  unsigned TaskPinned(unsigned pool, pid_t tid, unsigned cpu) const {
    unsigned n = 0;
    for (const auto& [id, r] : live_) {
      if (r.target.is_task() && r.target.tid == tid && Pool(r.type) == pool &&
          (r.target.kind == Target::Kind::kTask || r.target.cpu == cpu)) {
        n += r.weight;
      }
    }
    return n;
  }
  unsigned MaxTaskPinned(unsigned pool, unsigned cpu) const {
    unsigned m = 0;
    for (pid_t t : Tasks()) m = std::max(m, TaskPinned(pool, t, cpu));
    return m;
  }
  std::set<pid_t> Tasks() const {
    std::set<pid_t> s;
    for (const auto& [id, r] : live_) {
      if (r.target.is_task()) s.insert(r.target.tid);
    }
    return s;
  }
  bool Fits(const Request& r) const {
    const unsigned p = Pool(r.type), slots = c_.pools[p].slots;
    if (!r.target.is_task()) {
      return CpuPinned(p, r.target.cpu) + MaxTaskPinned(p, r.target.cpu) + r.weight <= slots;
    }
    for (unsigned cpu = 0; cpu < c_.cpus; ++cpu) {
      if (r.target.kind == Target::Kind::kTaskOnCpu && cpu != r.target.cpu) continue;
      if (CpuPinned(p, cpu) + TaskPinned(p, r.target.tid, cpu) + r.weight > slots) return false;
    }
    return true;
  }
  bool Reserve(ReservationId id, const Request& r) {
    if (!Fits(r)) return false;
    live_[id] = r;
    return true;
  }
  bool Release(ReservationId id) { return live_.erase(id) > 0; }
  bool Modify(ReservationId id, const Request& r) {
    auto it = live_.find(id);
    if (it == live_.end()) return false;
    Request old = it->second;
    live_.erase(it);
    if (Fits(r)) {
      live_[id] = r;
      return true;
    }
    live_[id] = old;
    return false;
  }
  const std::map<ReservationId, Request>& live() const { return live_; }
  const Config& config() const { return c_; }

 private:
  Config c_;
  std::map<ReservationId, Request> live_;
};

}  // namespace hwwatch::engine::testing
