#include "daemon/bpf_samples_backend.h"

#include <algorithm>
#include <string>

namespace hwwatch::daemon {

std::optional<Problem> BpfSamplesBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                              const ArmSpec& spec) {
  const WatchSpec& watch = *spec.watch;
  auto failed = [&](const arch::Error& err) {
    return ProblemFromErrno(err, KernelStep::kArm, where.tid, watch.weight());
  };
  // The program knows the watch before its first trap.
  bool inherits = false;
  std::string why = capture_.AddWatch(spec.group, watch, where.is_task() ? where.tid : -1,
                                      spec.inherit ? spec.tgid : 0, inherits);
  if (!why.empty()) return failed(arch::Error{EIO, why});
  arm.capture_group = spec.group;
  arm.inherits = inherits;
  arch::PerfOptions options = spec.options;
  options.inherit = inherits;
  for (unsigned i = 0; i < watch.cover.needed(); ++i) {
    auto bp = Open(watch, i, where, options);
    if (!bp) return failed(bp.error());
    auto link = capture_.Attach(bp->fd(), spec.group);
    if (!link) return failed(link.error());
    arm.events.push_back(std::move(bp.value()));
    arm.links.push_back(std::move(link.value()));
  }
  // A thread's end is found in /proc (Reap): perf reports POLLHUP at all
  // times on an event without a ring, so poll() cannot tell.
  return std::nullopt;
}

void BpfSamplesBackend::Disarm(ThreadArm& arm) {
  arm.links.clear();  // each link holds its event: the slot goes with both
  if (arm.capture_group != 0) capture_.RemoveWatch(arm.capture_group);
  arm.capture_group = 0;
  PerfEventsBackend::Disarm(arm);
}

std::optional<Problem> BpfSamplesBackend::Move(std::vector<ThreadArm>& arms,
                                               const TargetSpec& target, const WatchSpec& from,
                                               const ArmSpec& to) {
  const bool inherits = std::any_of(arms.begin(), arms.end(), [](const auto& a) { return a.inherits; });
  if (inherits && from.weight() != to.watch->weight()) {
    // Threads the kernel armed at clone hold copies of the old registers;
    // a register added now would not reach them.
    return MakeProblem(Code::kFailedPrecondition,
                       "a process watch keeps its number of registers (" +
                           std::to_string(from.weight()) + ") when modified; release it and "
                           "reserve the new region");
  }
  if (auto no = PerfEventsBackend::Move(arms, target, from, to)) return no;
  // Registers the new watch dropped close with their links; new ones get
  // theirs (a failure here leaves a register without capture: said).
  std::optional<Problem> problem;
  for (ThreadArm& arm : arms) {
    if (arm.links.size() > arm.events.size()) arm.links.resize(arm.events.size());
    for (size_t i = arm.links.size(); i < arm.events.size(); ++i) {
      auto link = capture_.Attach(arm.events[i].fd(), to.group);
      if (!link) {
        problem = ProblemFromErrno(link.error(), KernelStep::kModify, arm.tid, to.watch->weight());
        break;
      }
      arm.links.push_back(std::move(link.value()));
    }
  }
  const pid_t pid = target.is_task() ? target.tid : -1;
  capture_.UpdateWatch(to.group, *to.watch, pid);
  return problem;
}

std::optional<Backend::Fates> BpfSamplesBackend::FatesOf(uint64_t group) const {
  const BpfCapture::Counts c = capture_.Read(group);
  return Fates{c.emitted, c.filtered, c.dropped};
}

}  // namespace hwwatch::daemon
