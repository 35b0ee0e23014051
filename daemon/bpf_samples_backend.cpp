#include "daemon/bpf_samples_backend.h"

#include <algorithm>
#include <string>

#include "daemon/procfs.h"

namespace hwwatch::daemon {

std::optional<Problem> BpfSamplesBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                              const ArmSpec& spec) {
  const WatchSpec& watch = *spec.watch;
  auto failed = [&](const arch::Error& err) {
    return ProblemFromErrno(err, KernelStep::kArm, where.tid, watch.weight());
  };
  // The program knows the watch before its first trap (Prime, below).
  bool inherits = false;
  pid_t tgid = spec.inherit ? spec.tgid : 0;
  if (where.is_task() && tgid == 0) {
    tgid = procfs::TgidOf(where.tid).value_or(where.tid);
  }
  capture_.AddWatch(spec.group, watch, tgid, spec.inherit, inherits);
  arm.capture_group = spec.group;
  arm.inherits = inherits;
  arch::PerfOptions options = spec.options;
  options.inherit = inherits;
  // The new program's memory is not what was watched (its exec is
  // reported through the exec tracepoint).
  options.remove_on_exec = where.is_task();
  // Opened disabled and enabled once the program is attached: a trap in
  // between would be counted by the kernel and seen by nobody.
  const bool enable = !options.start_disabled;
  options.start_disabled = true;
  for (unsigned i = 0; i < watch.cover.needed(); ++i) {
    auto bp = Open(watch, i, where, options);
    if (!bp) return failed(bp.error());
    // A mapped group's events carry the program themselves (no link).
    auto link = Attach(bp->fd(), spec.group, inherits);
    if (!link) return failed(link.error());
    arm.events.push_back(std::move(bp.value()));
    arm.links.push_back(std::move(link.value()));
  }
  // The program's table gets the watch, with the bytes just before the
  // events start as the first hit's old value.
  if (auto refused = capture_.Prime(spec.group, watch, where.is_task() ? where.tid : 0)) {
    if (refused->Is(E2BIG)) return MakeProblem(Code::kResourceExhausted, refused->message);
    return failed(*refused);
  }
  for (arch::PerfBreakpoint& bp : arm.events) {
    if (!enable) break;
    if (auto st = bp.Enable(); !st.ok()) return failed(st.error());
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
  // Threads the kernel armed at clone hold copies of their parents'
  // events, which the kernel moves (and closes) with them: they have
  // nothing of their own to move. A register added now would not reach
  // them, so a process watch with such threads cannot grow.
  std::vector<ThreadArm> children;
  for (auto it = arms.begin(); it != arms.end();) {
    if (it->kernel_armed) {
      children.push_back(std::move(*it));
      it = arms.erase(it);
    } else {
      ++it;
    }
  }
  std::optional<Problem> problem;
  if (!children.empty() && to.watch->weight() > from.weight()) {
    problem = MakeProblem(
        Code::kFailedPrecondition,
        std::to_string(children.size()) +
            " thread(s) of the process were armed by the kernel "
            "when they started, with " +
            std::to_string(from.weight()) +
            " register(s); they cannot get more: release the watch and reserve the new region");
  }
  // A mapped group's events find it by address: the new addresses are
  // mapped before anything moves, or nothing moves.
  auto inherits = [](const ThreadArm& a) { return a.inherits; };
  const bool mapped = std::any_of(arms.begin(), arms.end(), inherits) ||
                      std::any_of(children.begin(), children.end(), inherits);
  bool mapped_new = false;
  if (!problem && mapped) {
    if (auto taken = capture_.MapMoved(to.group, *to.watch)) {
      problem = MakeProblem(Code::kFailedPrecondition,
                            "another watch of process " + std::to_string(target.tid) +
                                " has a register at " + arch::Hex(*taken) +
                                ": this watch's events find theirs by process and address, so "
                                "it cannot move there while that one is held");
    } else {
      mapped_new = true;
    }
  }
  // Registers added on a thread are opened as its first ones were.
  ArmSpec these = to;
  these.options.inherit = std::any_of(arms.begin(), arms.end(), inherits);
  these.options.remove_on_exec = target.is_task();
  if (!problem) problem = PerfEventsBackend::Move(arms, target, from, these);
  if (problem) {
    if (mapped_new) capture_.UnmapMoved(to.group, *to.watch);  // nothing moved
  } else {
    // Registers the new watch dropped close with their links; new ones get
    // theirs (a failure here leaves a register without capture: said).
    for (ThreadArm& arm : arms) {
      if (arm.links.size() > arm.events.size()) arm.links.resize(arm.events.size());
      for (size_t i = arm.links.size(); i < arm.events.size() && !problem; ++i) {
        auto link = Attach(arm.events[i].fd(), to.group, arm.inherits);
        if (!link) {
          problem =
              ProblemFromErrno(link.error(), KernelStep::kModify, arm.tid, to.watch->weight());
          break;
        }
        arm.links.push_back(std::move(link.value()));
      }
    }
    capture_.UpdateWatch(to.group, *to.watch, target.is_task() ? target.tid : -1);
  }
  for (ThreadArm& c : children) arms.push_back(std::move(c));
  return problem;
}

arch::Result<arch::ScopedFd> BpfSamplesBackend::Attach(int perf_fd, uint64_t group, bool mapped) {
  if (!mapped) return capture_.Attach(perf_fd, group);
  if (arch::Status st = capture_.AttachMapped(perf_fd); !st.ok()) return st.error();
  return arch::ScopedFd();  // the event holds the program
}

std::optional<Backend::Fates> BpfSamplesBackend::FatesOf(uint64_t group) const {
  const BpfCapture::Counts c = capture_.Read(group);
  return Fates{c.emitted, c.filtered, c.dropped};  // each counted by the program
}

}  // namespace hwwatch::daemon
