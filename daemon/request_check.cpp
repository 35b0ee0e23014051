#include "daemon/request_check.h"

#include <cstdio>
#include <optional>
#include <string>

namespace hwwatch::daemon {

namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

uint64_t UserAddressLimit(arch::Arch a) {
  switch (a) {
    case arch::Arch::kX86_64:
      return uint64_t{1} << 47;
    case arch::Arch::kAarch64:
      return uint64_t{1} << 48;
    case arch::Arch::kUnknown:
      break;
  }
  return 0;
}

Result<TargetSpec> CheckTarget(const TargetSpec& t, unsigned cpus) {
  auto check_tid = [](int64_t tid, const char* what) -> std::optional<Problem> {
    if (tid <= 0)
      return Invalid(std::string(what) + " must be a positive id, not " + std::to_string(tid));
    return std::nullopt;
  };
  auto check_cpu = [cpus](uint32_t cpu) -> std::optional<Problem> {
    if (cpu >= cpus) {
      return Invalid("cpu " + std::to_string(cpu) + " does not exist (this host has CPUs 0-" +
                     std::to_string(cpus - 1) + ")");
    }
    return std::nullopt;
  };
  switch (t.kind) {
    case TargetSpec::Kind::kThread:
      if (auto p = check_tid(t.tid, "tid")) return *p;
      return TargetSpec{t.kind, t.tid, 0};
    case TargetSpec::Kind::kProcess:
      if (auto p = check_tid(t.tid, "pid")) return *p;
      return TargetSpec{t.kind, t.tid, 0};
    case TargetSpec::Kind::kCpu:
      if (auto p = check_cpu(t.cpu)) return *p;
      return TargetSpec{t.kind, 0, t.cpu};
    case TargetSpec::Kind::kThreadOnCpu:
      if (auto p = check_tid(t.tid, "tid")) return *p;
      if (auto p = check_cpu(t.cpu)) return *p;
      return t;
    case TargetSpec::Kind::kNone:
      break;
  }
  return Invalid("the target is missing: set one of tid, pid, cpu or thread_on_cpu");
}

Result<WatchSpec> CheckWatch(const WatchRequest& w, const TargetSpec& target,
                             const arch::HostCapabilities& caps) {
  WatchSpec s;
  if (!w.access) return Invalid("the access must be write, read_write, execute or read");
  s.region.access = *w.access;
  if (w.length == 0) return Invalid("the length must be at least 1 byte");
  if (w.address > UINT64_MAX - (w.length - 1)) {
    return Invalid("address " + Hex(w.address) + " + length " + std::to_string(w.length) +
                   " wraps around the address space");
  }
  s.region.address = w.address;
  s.region.length = w.length;
  s.mode = w.over_cover ? arch::CoverMode::kOverCover : arch::CoverMode::kExact;
  const uint64_t last = w.address + (w.length - 1);
  if (target.is_task() && last >= UserAddressLimit(caps.arch)) {
    return Invalid("address " + Hex(w.address) + " is not a user-space address; watching" +
                   " kernel memory needs a CPU target");
  }
  // Kernel addresses live in the top half: the same number of significant
  // bits, sign-extended. Anything between the halves is not an address.
  const uint64_t kernel_start = ~(UserAddressLimit(caps.arch) - 1);
  const bool user = last < UserAddressLimit(caps.arch);
  const bool kernel = w.address >= kernel_start;
  if (!user && !kernel) {
    return Invalid("address range " + Hex(w.address) + "-" + Hex(last) +
                   " is not canonical on this architecture");
  }
  const arch::SlotPool* pool = caps.PoolFor(arch::SlotTypeOf(s.region.access));
  if (!pool) return Invalid("this host has no registers for that access");
  auto cover = arch::PlanCover(caps.arch, s.region, s.mode, pool->slots);
  if (!cover) {
    Code code = cover.error().Is(E2BIG) ? Code::kResourceExhausted : Code::kInvalidArgument;
    return MakeProblem(code, cover.error().message);
  }
  s.cover = std::move(cover.value());
  return s;
}

Result<CheckedReserve> CheckReserve(const ReserveArgs& req, unsigned cpus) {
  if (req.lease.seconds < 0 || req.lease.nanos < 0 || req.lease.seconds > kMaxLeaseSeconds) {
    return Invalid("a lease is 0 to " + std::to_string(kMaxLeaseSeconds) + " seconds, not " +
                   std::to_string(req.lease.seconds));
  }
  auto target = CheckTarget(req.target, cpus);
  if (!target) return std::move(target).error();
  ArmHow how;
  how.ptrace = req.backend == BackendChoice::kPtrace || req.slot.has_value();
  how.slot = req.slot;
  if (how.ptrace && req.backend == BackendChoice::kPerf) {
    return Invalid("a chosen slot needs the ptrace backend, not perf");
  }
  if (how.ptrace && (req.target.kind == TargetSpec::Kind::kCpu ||
                     req.target.kind == TargetSpec::Kind::kThreadOnCpu)) {
    return Invalid("the ptrace backend watches threads and processes; CPUs need perf");
  }
  if (how.ptrace && req.delivery != Delivery::kDefault && req.delivery != Delivery::kStop) {
    return Invalid(
        "the ptrace backend delivers hits as stops that hwwatchd takes; samples and counts need "
        "perf");
  }
  // perf's default delivery is samples; ptrace always stops the thread
  // (the daemon takes the trap and reports the hit).
  how.delivery = how.ptrace                           ? Delivery::kStop
                 : req.delivery == Delivery::kDefault ? Delivery::kSamples
                                                      : req.delivery;
  return CheckedReserve{*target, how};
}

Problem WatchProblem(Problem p, std::optional<arch::SlotType> type) {
  if (p.code == Code::kResourceExhausted) {
    Refusal r;
    r.reason = Refusal::Reason::kRegionTooLarge;
    r.slot_type = type;
    p.refusal = std::move(r);
    if (p.refusal->explanation.empty()) p.refusal->explanation = p.message;
  }
  return p;
}

}  // namespace hwwatch::daemon
