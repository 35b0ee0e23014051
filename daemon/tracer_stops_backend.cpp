#include "daemon/tracer_stops_backend.h"

#include <spdlog/spdlog.h>

#include "daemon/accounting.h"

namespace hwwatch::daemon {

Result<ThreadArm> TracerStopsBackend::Admit(const TargetSpec& where, arch::SlotType type,
                                            unsigned weight, const ArmHow&) {
  auto id = daemon::Admit(engine_, where, type, weight);
  if (!id) return std::move(id).error();
  ThreadArm arm;
  arm.tid = where.tid;
  arm.engine_id = *id;
  arm.slot_type = type;
  return arm;
}

std::optional<Problem> TracerStopsBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                               const ArmSpec& spec) {
  auto slots = tracer_.Add(where.tid, UseFor(spec));
  if (!slots.ok()) {
    return ProblemFromErrno(slots.error(), KernelStep::kArm, where.tid, spec.watch->weight());
  }
  arm.traced_group = spec.group;
  arm.slots = *slots;
  return std::nullopt;
}

void TracerStopsBackend::Disarm(ThreadArm& arm) {
  if (arm.traced_group != 0) tracer_.Remove(arm.tid, arm.traced_group);
  arm.traced_group = 0;
  arm.slots.clear();
  if (arm.engine_id != 0) engine_.Release(arm.engine_id);
  arm.engine_id = 0;
}

std::optional<Problem> TracerStopsBackend::Move(std::vector<ThreadArm>& arms,
                                                const TargetSpec& target, const WatchSpec& from,
                                                const ArmSpec& to) {
  // The tracer replaces each thread's events; a failure puts back the
  // threads done.
  ArmSpec old = to;
  old.watch = &from;
  for (size_t a = 0; a < arms.size(); ++a) {
    if (arch::Status st = tracer_.Replace(arms[a].tid, UseFor(to)); !st.ok()) {
      for (size_t k = 0; k < a; ++k) {
        if (arch::Status back = tracer_.Replace(arms[k].tid, UseFor(old)); !back.ok()) {
          spdlog::error("modify: thread {} could not get its old watch back: {}", arms[k].tid,
                        back.error().message);
        }
      }
      return ProblemFromErrno(st.error(), KernelStep::kArm, WhereArmed(target, arms[a]).tid,
                              to.watch->weight());
    }
  }
  return std::nullopt;
}

}  // namespace hwwatch::daemon
