#include "daemon/request_check.h"

#include <cstdio>
#include <optional>
#include <string>

namespace hwwatch::daemon {

namespace v1 = ::hwwatch::v1;

namespace {

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

bool ToAccess(v1::Access a, arch::Access* out) {
  switch (a) {
    case v1::ACCESS_WRITE:
      *out = arch::Access::kWrite;
      return true;
    case v1::ACCESS_READ_WRITE:
      *out = arch::Access::kReadWrite;
      return true;
    case v1::ACCESS_EXECUTE:
      *out = arch::Access::kExecute;
      return true;
    case v1::ACCESS_READ:
      *out = arch::Access::kRead;
      return true;
    default:
      return false;
  }
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

Outcome<TargetSpec> CheckTarget(const v1::Target& t, unsigned cpus) {
  TargetSpec s;
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
  switch (t.kind_case()) {
    case v1::Target::kTid:
      if (auto p = check_tid(t.tid(), "tid")) return *p;
      s.kind = TargetSpec::Kind::kThread;
      s.tid = t.tid();
      return s;
    case v1::Target::kPid:
      if (auto p = check_tid(t.pid(), "pid")) return *p;
      s.kind = TargetSpec::Kind::kProcess;
      s.tid = t.pid();
      return s;
    case v1::Target::kCpu:
      if (auto p = check_cpu(t.cpu())) return *p;
      s.kind = TargetSpec::Kind::kCpu;
      s.cpu = t.cpu();
      return s;
    case v1::Target::kThreadOnCpu:
      if (auto p = check_tid(t.thread_on_cpu().tid(), "tid")) return *p;
      if (auto p = check_cpu(t.thread_on_cpu().cpu())) return *p;
      s.kind = TargetSpec::Kind::kThreadOnCpu;
      s.tid = t.thread_on_cpu().tid();
      s.cpu = t.thread_on_cpu().cpu();
      return s;
    case v1::Target::KIND_NOT_SET:
      break;
  }
  return Invalid("the target is missing: set one of tid, pid, cpu or thread_on_cpu");
}

Outcome<WatchSpec> CheckWatch(const v1::Watch& w, const TargetSpec& target,
                              const arch::HostCapabilities& caps) {
  WatchSpec s;
  if (!ToAccess(w.access(), &s.region.access)) {
    return Invalid("the access must be write, read_write, execute or read");
  }
  if (w.length() == 0) return Invalid("the length must be at least 1 byte");
  if (w.address() > UINT64_MAX - (w.length() - 1)) {
    return Invalid("address " + Hex(w.address()) + " + length " + std::to_string(w.length()) +
                   " wraps around the address space");
  }
  s.region.address = w.address();
  s.region.length = w.length();
  s.mode = w.over_cover() ? arch::CoverMode::kOverCover : arch::CoverMode::kExact;
  const uint64_t last = w.address() + (w.length() - 1);
  if (target.is_task() && last >= UserAddressLimit(caps.arch)) {
    return Invalid("address " + Hex(w.address()) + " is not a user-space address; watching" +
                   " kernel memory needs a CPU target");
  }
  // Kernel addresses live in the top half: the same number of significant
  // bits, sign-extended. Anything between the halves is not an address.
  const uint64_t kernel_start = ~(UserAddressLimit(caps.arch) - 1);
  const bool user = last < UserAddressLimit(caps.arch);
  const bool kernel = w.address() >= kernel_start;
  if (!user && !kernel) {
    return Invalid("address range " + Hex(w.address()) + "-" + Hex(last) +
                   " is not canonical on this architecture");
  }
  const arch::SlotPool* pool = caps.PoolFor(arch::SlotTypeOf(s.region.access));
  if (!pool) return Invalid("this host has no registers for that access");
  auto cover = arch::PlanCover(caps.arch, s.region, s.mode, pool->slots);
  if (!cover) {
    Code code = cover.error().Is(E2BIG) ? Code::kResourceExhausted : Code::kInvalidArgument;
    return Problem{code, cover.error().message};
  }
  s.cover = std::move(cover.value());
  return s;
}

}  // namespace hwwatch::daemon
