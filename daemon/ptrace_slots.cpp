#include "daemon/ptrace_slots.h"

#include <algorithm>
#include <string>

#include "daemon/accounting.h"

namespace hwwatch::daemon {

PtraceSlotBank::Key PtraceSlotBank::KeyOf(pid_t tid, arch::SlotType type) const {
  const arch::SlotPool* pool = caps_.PoolFor(type);
  if (pool != nullptr && pool->mixed()) type = arch::SlotType::kData;
  return {tid, type};
}

unsigned PtraceSlotBank::Count(arch::SlotType type) const {
  const arch::SlotPool* pool = caps_.PoolFor(type);
  return std::min<unsigned>(pool != nullptr ? pool->slots : 0, 16);
}

Result<std::vector<unsigned>> PtraceSlotBank::Take(pid_t tid, arch::SlotType type, unsigned weight,
                                                   std::optional<unsigned> first) {
  const unsigned count = Count(type);
  if (first && *first >= count) {
    return Invalid("slot " + std::to_string(*first) + " does not exist: this host has " +
                   std::to_string(count));
  }
  MutexLock lock(mu_);
  Bank& bank = banks_[KeyOf(tid, type)];
  std::vector<unsigned> pick;
  if (first) pick.push_back(*first);
  // Registers the kernel still holds for us first: they cost no new slot.
  for (bool registered : {true, false}) {
    for (unsigned s = 0; s < count && pick.size() < weight; ++s) {
      if (!bank.in_use[s] && (bank.registered[s] != 0) == registered &&
          std::find(pick.begin(), pick.end(), s) == pick.end()) {
        pick.push_back(s);
      }
    }
  }
  if (pick.size() < weight) {
    Refusal r;
    r.reason = Refusal::Reason::kTaskFull;
    r.tid = tid;
    r.weight = weight;
    r.slots = count;
    return MakeProblem(
        Code::kResourceExhausted,
        "hwwatchd's ptrace watches use every debug register on thread " + std::to_string(tid),
        std::move(r));
  }
  return Mark(bank, tid, type, pick);
}

Result<std::vector<unsigned>> PtraceSlotBank::TakeExactly(pid_t tid, arch::SlotType type,
                                                          const std::vector<unsigned>& slots) {
  MutexLock lock(mu_);
  return Mark(banks_[KeyOf(tid, type)], tid, type, slots);
}

Result<std::vector<unsigned>> PtraceSlotBank::Mark(Bank& bank, pid_t tid, arch::SlotType type,
                                                   const std::vector<unsigned>& pick) {
  const unsigned count = Count(type);
  for (unsigned s : pick) {
    if (s >= count || bank.in_use[s]) {
      return MakeProblem(Code::kFailedPrecondition,
                         "slot " + std::to_string(s) +
                             " is already used by another reservation on thread " +
                             std::to_string(tid));
    }
  }
  if (const arch::SlotPool* pool = caps_.PoolFor(type); pool != nullptr && pool->mixed()) {
    type = arch::SlotType::kData;
  }
  std::vector<unsigned> added;
  for (unsigned s : pick) {
    if (bank.registered[s] != 0) continue;
    engine::Admission a = engine_.Reserve({engine::Target::Task(tid), type, 1});
    if (!a) {
      for (unsigned undo : added) {
        engine_.Release(bank.registered[undo]);
        bank.registered[undo] = 0;
      }
      return EngineProblem(a.refusal());
    }
    bank.registered[s] = a.id();
    added.push_back(s);
  }
  for (unsigned s : pick) bank.in_use[s] = true;
  return pick;
}

void PtraceSlotBank::Put(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots) {
  MutexLock lock(mu_);
  auto it = banks_.find(KeyOf(tid, type));
  if (it == banks_.end()) return;
  for (unsigned s : slots) {
    if (s < it->second.in_use.size()) it->second.in_use[s] = false;
  }
}

void PtraceSlotBank::Forget(pid_t tid) {
  MutexLock lock(mu_);
  for (arch::SlotType type : {arch::SlotType::kData, arch::SlotType::kInst}) {
    auto it = banks_.find({tid, type});
    if (it == banks_.end()) continue;
    for (engine::ReservationId id : it->second.registered) {
      if (id != 0) engine_.Release(id);
    }
    banks_.erase(it);
  }
}

std::vector<pid_t> PtraceSlotBank::Idle() const {
  MutexLock lock(mu_);
  std::vector<pid_t> out;
  for (const auto& [key, bank] : banks_) {
    if (std::none_of(bank.in_use.begin(), bank.in_use.end(), [](bool b) { return b; })) {
      out.push_back(key.first);
    }
  }
  return out;
}

}  // namespace hwwatch::daemon
