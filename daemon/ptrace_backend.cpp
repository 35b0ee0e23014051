#include "daemon/ptrace_backend.h"

#include <spdlog/spdlog.h>

namespace hwwatch::daemon {

Result<ThreadArm> PtraceBackend::Admit(const TargetSpec& where, arch::SlotType type,
                                       unsigned weight, const ArmHow& how) {
  // Accounted per debug register index (see ptrace_slots.h).
  auto taken = bank_.Take(where.tid, type, weight, how.slot);
  if (!taken) return std::move(taken).error();
  ThreadArm arm;
  arm.tid = where.tid;
  arm.slots = std::move(taken.value());
  arm.slot_type = type;
  return arm;
}

std::optional<Problem> PtraceBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                          const ArmSpec& spec) {
  std::vector<ThreadArm> one;
  one.push_back(std::move(arm));
  one.front().tid = where.tid;
  auto out = ArmAll(one, spec);
  arm = std::move(one.front());
  return std::move(out.front());
}

std::vector<std::optional<Problem>> PtraceBackend::ArmAll(std::vector<ThreadArm>& arms,
                                                          const ArmSpec& spec) {
  // One pass of the tracer for every thread; the bank's slots go with
  // each thread's use and are taken back as the tracer armed them.
  std::vector<std::pair<pid_t, TraceUse>> adds;
  const TraceUse use = UseFor(spec);
  for (ThreadArm& arm : arms) {
    adds.emplace_back(arm.tid, use);
    adds.back().second.slots = std::move(arm.slots);
    arm.slots.clear();
  }
  auto armed = tracer_.AddAll(adds);
  std::vector<std::optional<Problem>> out;
  for (size_t i = 0; i < arms.size(); ++i) {
    ThreadArm& arm = arms[i];
    bank_.Put(arm.tid, spec.type, adds[i].second.slots);
    if (!armed[i].ok()) {
      out.push_back(
          ProblemFromErrno(armed[i].error(), KernelStep::kArm, arm.tid, spec.watch->weight()));
      continue;
    }
    // The tracer may have armed it already (a followed process's new
    // thread): account what it used.
    if (auto held = bank_.TakeExactly(arm.tid, spec.type, *armed[i]); !held) {
      tracer_.Remove(arm.tid, spec.group);
      out.push_back(std::move(held).error());
      continue;
    }
    arm.traced_group = spec.group;
    arm.slots = *armed[i];
    out.push_back(std::nullopt);
  }
  return out;
}

void PtraceBackend::Disarm(ThreadArm& arm) {
  if (arm.traced_group != 0) tracer_.Remove(arm.tid, arm.traced_group);
  arm.traced_group = 0;
  if (!arm.slots.empty()) bank_.Put(arm.tid, arm.slot_type, arm.slots);
  arm.slots.clear();
}

void PtraceBackend::DisarmAll(std::vector<ThreadArm>& arms) {
  // The arms of one group: one pass of the tracer takes them all off.
  std::vector<pid_t> traced;
  uint64_t group = 0;
  for (ThreadArm& arm : arms) {
    if (arm.traced_group == 0) continue;
    if (group != 0 && arm.traced_group != group) {
      Disarm(arm);  // not expected: another group's arm, alone
      continue;
    }
    group = arm.traced_group;
    traced.push_back(arm.tid);
  }
  if (!traced.empty()) tracer_.RemoveAll(traced, group);
  for (ThreadArm& arm : arms) {
    if (arm.traced_group == group) arm.traced_group = 0;
    Disarm(arm);  // the slots back to the bank
  }
}

void PtraceBackend::Restore(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots,
                            arch::SlotType back_type, const std::vector<unsigned>& back) {
  bank_.Put(tid, type, slots);
  if (auto again = bank_.TakeExactly(tid, back_type, back); !again) {
    spdlog::error("modify: thread {} could not take its old debug registers back: {}", tid,
                  again.error().message);
  }
}

std::optional<Problem> PtraceBackend::Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                                           const WatchSpec& from, const ArmSpec& to) {
  // Per thread: slots taken as if the old watch were released, then one
  // stop that swaps the registers. A failure puts back the threads done.
  const unsigned weight = to.watch->weight();
  std::vector<std::pair<ThreadArm*, std::vector<unsigned>>> done;  // (arm, its old slots)
  std::optional<Problem> failed;
  for (ThreadArm& arm : arms) {
    bank_.Put(arm.tid, arm.slot_type, arm.slots);
    auto taken = bank_.Take(arm.tid, to.type, weight, to.how.slot);
    if (!taken) {
      Restore(arm.tid, to.type, {}, arm.slot_type, arm.slots);
      failed = std::move(taken).error();
      break;
    }
    TraceUse use = UseFor(to);
    use.slots = *taken;
    if (arch::Status st = tracer_.Replace(arm.tid, use); !st.ok()) {
      Restore(arm.tid, to.type, use.slots, arm.slot_type, arm.slots);
      failed = ProblemFromErrno(st.error(), KernelStep::kArm, WhereArmed(target, arm).tid, weight);
      break;
    }
    done.emplace_back(&arm, arm.slots);
    arm.slots = use.slots;
    arm.slot_type = to.type;
  }
  if (failed) {
    const arch::SlotType old_type = arch::SlotTypeOf(from.region.access);
    ArmSpec old = to;
    old.watch = &from;
    old.type = old_type;
    for (auto& [arm, old_slots] : done) {
      Restore(arm->tid, arm->slot_type, arm->slots, old_type, old_slots);
      TraceUse use = UseFor(old);
      use.slots = old_slots;
      if (arch::Status st = tracer_.Replace(arm->tid, use); !st.ok()) {
        spdlog::error("modify: thread {} could not get its old watch back: {}", arm->tid,
                      st.error().message);
      }
      arm->slots = old_slots;
      arm->slot_type = old_type;
    }
  }
  return failed;
}

}  // namespace hwwatch::daemon
