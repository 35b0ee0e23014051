#include "daemon/perf_events_backend.h"

#include <spdlog/spdlog.h>

#include <atomic>

#include "daemon/accounting.h"

namespace hwwatch::daemon {

namespace {

arch::PerfTarget ToPerf(const TargetSpec& t) {
  switch (t.kind) {
    case TargetSpec::Kind::kCpu:
      return arch::PerfTarget::Cpu(static_cast<int>(t.cpu));
    case TargetSpec::Kind::kThreadOnCpu:
      return arch::PerfTarget::ThreadOnCpu(t.tid, static_cast<int>(t.cpu));
    default:
      return arch::PerfTarget::Thread(t.tid);
  }
}

}  // namespace

Result<ThreadArm> PerfEventsBackend::Admit(const TargetSpec& where, arch::SlotType type,
                                           unsigned weight, const ArmHow&) {
  auto id = daemon::Admit(engine_, where, type, weight);
  if (!id) return std::move(id).error();
  ThreadArm arm;
  arm.tid = where.is_task() ? where.tid : -1;
  arm.engine_id = *id;
  arm.slot_type = type;
  return arm;
}

arch::Result<arch::PerfBreakpoint> PerfEventsBackend::Open(const WatchSpec& watch, unsigned i,
                                                           const TargetSpec& where,
                                                           const arch::PerfOptions& options) const {
  return arch::PerfBreakpoint::Open(watch.cover.Spec(caps_.arch, i), ToPerf(where), options);
}

std::optional<Problem> PerfEventsBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                              const ArmSpec& spec) {
  const WatchSpec& watch = *spec.watch;
  for (unsigned i = 0; i < watch.cover.needed(); ++i) {
    auto bp = Open(watch, i, where, spec.options);
    if (!bp) return ProblemFromErrno(bp.error(), KernelStep::kArm, where.tid, watch.weight());
    arm.events.push_back(std::move(bp.value()));
  }
  return std::nullopt;
}

void PerfEventsBackend::Disarm(ThreadArm& arm) {
  arm.sampled.clear();  // closing the perf events frees the kernel's slots
  arm.events.clear();
  if (arm.engine_id != 0) engine_.Release(arm.engine_id);
  arm.engine_id = 0;
}

std::vector<std::optional<Problem>> PerfEventsBackend::ArmAll(std::vector<ThreadArm>& arms,
                                                              const ArmSpec& spec) {
  std::vector<std::optional<Problem>> out(arms.size());
  std::atomic<bool> failed{false};
  auto on = [&](size_t i) { return arms[i].last_cpu; };
  fan_out_.ForEach(
      arms.size(),
      [&](size_t i) {
        if (failed.load(std::memory_order_relaxed)) {
          // Not tried: another thread's failure is the answer. Not found is
          // what the caller passes over (as for a thread that ended).
          out[i] = MakeProblem(Code::kNotFound, "not armed: another thread failed");
          return;
        }
        out[i] = Arm(arms[i], {TargetSpec::Kind::kThread, arms[i].tid, 0}, spec);
        if (out[i] && out[i]->code != Code::kNotFound)
          failed.store(true, std::memory_order_relaxed);
      },
      on);
  return out;
}

void PerfEventsBackend::DisarmAll(std::vector<ThreadArm>& arms) {
  fan_out_.ForEach(arms.size(), [&](size_t i) { Disarm(arms[i]); });
}

std::optional<Problem> PerfEventsBackend::Move(std::vector<ThreadArm>& arms,
                                               const TargetSpec& target, const WatchSpec&,
                                               const ArmSpec& to) {
  // The kernel: move each thread's registers in place, open or close the
  // difference. Any failure puts every moved register back, so the caller
  // sees the new watch or the old one, never a mix.
  struct Change {
    std::vector<arch::PerfBreakpoint*> events;
    std::vector<arch::BreakpointSpec> old_specs;
    size_t moved = 0;
    std::vector<arch::PerfBreakpoint> added;
  };
  const WatchSpec& watch = *to.watch;
  const unsigned weight = watch.weight();
  std::vector<Change> changes(arms.size());
  std::optional<arch::Error> failure;
  for (size_t a = 0; a < arms.size() && !failure; ++a) {
    ThreadArm& arm = arms[a];
    Change& c = changes[a];
    for (auto& se : arm.sampled) c.events.push_back(&se->event);
    for (auto& ev : arm.events) c.events.push_back(&ev);
    for (auto* ev : c.events) c.old_specs.push_back(ev->spec());
    for (; c.moved < std::min<size_t>(c.events.size(), weight); ++c.moved) {
      if (arch::Status st = c.events[c.moved]->Modify(watch.cover.Spec(caps_.arch, c.moved));
          !st.ok()) {
        failure = st.error();
        break;
      }
    }
    for (size_t i = c.events.size(); !failure && i < weight; ++i) {
      auto bp = Open(watch, static_cast<unsigned>(i), WhereArmed(target, arm), to.options);
      if (bp && !arm.sampled.empty()) {
        if (arch::Status st = bp->SetOutput(arm.sampled.front()->event); !st.ok()) bp = st.error();
      }
      if (!bp) {
        failure = bp.error();
        break;
      }
      c.added.push_back(std::move(bp.value()));
    }
  }
  if (failure) {
    for (Change& c : changes) {
      c.added.clear();
      for (size_t i = 0; i < c.moved; ++i) {
        if (arch::Status st = c.events[i]->Modify(c.old_specs[i]); !st.ok()) {
          spdlog::error("modify: could not move a register back to its old watch: {}",
                        st.error().message);
        }
      }
    }
    return ProblemFromErrno(*failure, KernelStep::kModify, 0, weight);
  }
  // Done: drop registers the new watch does not need, adopt new ones.
  for (size_t a = 0; a < arms.size(); ++a) {
    ThreadArm& arm = arms[a];
    if (changes[a].events.size() > weight) {
      const size_t keep_events = weight - std::min<size_t>(weight, arm.sampled.size());
      arm.events.erase(arm.events.begin() + static_cast<std::ptrdiff_t>(keep_events),
                       arm.events.end());
    }
    for (auto& bp : changes[a].added) arm.events.push_back(std::move(bp));
  }
  return std::nullopt;
}

uint64_t PerfEventsBackend::Hits(const ThreadArm& arm) const {
  uint64_t hits = 0;
  for (const auto& ev : arm.events) {
    if (auto n = ev.ReadCount()) hits += *n;
  }
  for (const auto& se : arm.sampled) {
    if (auto n = se->event.ReadCount()) hits += *n;
  }
  return hits;
}

}  // namespace hwwatch::daemon
