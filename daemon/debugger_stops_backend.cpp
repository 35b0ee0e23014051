#include "daemon/debugger_stops_backend.h"

#include "daemon/procfs.h"

namespace hwwatch::daemon {

std::optional<Problem> DebuggerStopsBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                                 const ArmSpec& spec) {
  // The debugger: the process of the thread that traces this one now.
  auto creds = procfs::ReadProcCreds(where.tid);
  if (!creds) return MakeProblem(Code::kNotFound, "no thread " + std::to_string(where.tid));
  if (creds->tracer_pid == 0) {
    return MakeProblem(Code::kFailedPrecondition,
                       "thread " + std::to_string(where.tid) +
                           " is no longer traced: its debugger let go before the watch was armed");
  }
  auto tracer = procfs::ReadProcCreds(creds->tracer_pid);
  arm.tracer_tgid = tracer ? tracer->tgid : creds->tracer_pid;
  // Opened disabled, guarded, then enabled: no trap goes unguarded.
  ArmSpec these = spec;
  const bool enable = !these.options.start_disabled;
  these.options.start_disabled = true;
  if (auto problem = PerfEventsBackend::Arm(arm, where, these)) return problem;
  if (auto problem = GuardEvents(arm, spec.group, 0)) return problem;
  for (arch::PerfBreakpoint& bp : arm.events) {
    if (!enable) break;
    if (auto st = bp.Enable(); !st.ok()) {
      return ProblemFromErrno(st.error(), KernelStep::kArm, where.tid, spec.watch->weight());
    }
  }
  return std::nullopt;
}

std::optional<Problem> DebuggerStopsBackend::GuardEvents(ThreadArm& arm, uint64_t group,
                                                         size_t first) {
  if (capture_ == nullptr) return std::nullopt;
  for (size_t i = first; i < arm.events.size(); ++i) {
    auto link = capture_->Guard(arm.events[i].fd(), group, arm.tracer_tgid);
    if (!link) return ProblemFromErrno(link.error(), KernelStep::kArm, arm.tid, 1);
    arm.links.push_back(std::move(link.value()));
    arm.guard_group = group;
  }
  return std::nullopt;
}

void DebuggerStopsBackend::Disarm(ThreadArm& arm) {
  if (capture_ != nullptr) {
    for (size_t i = 0; i < arm.links.size(); ++i) capture_->Unguard(arm.guard_group);
  }
  arm.links.clear();
  arm.guard_group = 0;
  PerfEventsBackend::Disarm(arm);
}

std::optional<Problem> DebuggerStopsBackend::Move(std::vector<ThreadArm>& arms,
                                                  const TargetSpec& target, const WatchSpec& from,
                                                  const ArmSpec& to) {
  if (auto problem = PerfEventsBackend::Move(arms, target, from, to)) return problem;
  // Registers the new watch dropped close with their links; new ones get
  // theirs.
  for (ThreadArm& arm : arms) {
    while (arm.links.size() > arm.events.size()) {
      arm.links.pop_back();
      if (capture_ != nullptr) capture_->Unguard(arm.guard_group);
    }
    if (auto problem = GuardEvents(arm, to.group, arm.links.size())) return problem;
  }
  return std::nullopt;
}

}  // namespace hwwatch::daemon
