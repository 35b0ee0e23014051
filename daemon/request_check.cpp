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

// A cursor over a condition's text.
struct Scanner {
  std::string_view s;
  size_t i = 0;
  void Blanks() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  bool Take(std::string_view word) {
    Blanks();
    if (s.substr(i, word.size()) != word) return false;
    i += word.size();
    return true;
  }
  bool AtEnd() {
    Blanks();
    return i == s.size();
  }
  std::string Rest() const {
    if (i >= s.size()) return "the end";
    // Appended piece by piece: GCC 12 at -O3 warns falsely (-Wrestrict)
    // on `"'" + std::string(...)`.
    std::string quoted = "'";
    quoted.append(s.substr(i)).append("'");
    return quoted;
  }
  // A decimal or 0x hex number, optionally negative.
  std::optional<uint64_t> Number(bool* negative) {
    Blanks();
    *negative = i < s.size() && s[i] == '-';
    if (*negative) ++i;
    int base = 10;
    if (s.substr(i, 2) == "0x" || s.substr(i, 2) == "0X") {
      base = 16;
      i += 2;
    }
    uint64_t v = 0;
    size_t digits = 0;
    for (; i < s.size(); ++i, ++digits) {
      const char c = s[i];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : 99;
      if (d >= base) break;
      if (v > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base))
        return std::nullopt;
      v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    }
    if (digits == 0) return std::nullopt;
    return v;
  }
};

}  // namespace

Result<Condition> ParseCondition(std::string_view text, uint64_t length) {
  const std::string what = "condition '" + std::string(text) + "': ";
  if (length == 0 || length > 8) {
    return Invalid(what + "a condition needs a watch of 1 to 8 bytes (an integer), not " +
                   std::to_string(length));
  }
  const uint64_t width_mask = length == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * length)) - 1;
  Scanner sc{text};
  Condition c;
  const bool paren = sc.Take("(");
  if (!sc.Take("value")) return Invalid(what + "expected 'value' at " + sc.Rest());
  bool negative = false;
  if (sc.Take("&") && !sc.Take("&")) {
    auto mask = sc.Number(&negative);
    if (!mask || negative) return Invalid(what + "expected a mask (0x... or decimal) after '&'");
    if ((*mask & ~width_mask) != 0) {
      return Invalid(what + "mask " + Hex(*mask) + " has bits beyond the watch's " +
                     std::to_string(length) + " byte(s)");
    }
    c.mask = *mask;
  } else if (sc.i > 0 && sc.s[sc.i - 1] == '&') {
    return Invalid(what + "'&&' is not an operator; use 'value & MASK OP N'");
  }
  if (paren && !sc.Take(")")) return Invalid(what + "expected ')' at " + sc.Rest());
  static constexpr std::pair<std::string_view, Condition::Op> kOps[] = {
      {"==", Condition::Op::kEq}, {"!=", Condition::Op::kNe}, {"<=", Condition::Op::kLe},
      {">=", Condition::Op::kGe}, {"<", Condition::Op::kLt},  {">", Condition::Op::kGt}};
  bool found = false;
  for (const auto& [word, op] : kOps) {
    if (sc.Take(word)) {
      c.op = op;
      found = true;
      break;
    }
  }
  if (!found) return Invalid(what + "expected one of == != < <= > >= at " + sc.Rest());
  auto n = sc.Number(&negative);
  if (!n) return Invalid(what + "expected a number (decimal or 0x hex) at " + sc.Rest());
  if (!sc.AtEnd()) return Invalid(what + "unexpected " + sc.Rest() + " after the number");
  if (negative) {
    // Two's complement of the watch's width; it must fit as a signed value.
    const uint64_t limit = length == 8 ? uint64_t{1} << 63 : uint64_t{1} << (8 * length - 1);
    if (*n > limit) {
      return Invalid(what + "-" + std::to_string(*n) + " does not fit in a signed " +
                     std::to_string(length) + "-byte value");
    }
    c.is_signed = true;
    c.operand = (~*n + 1) & width_mask;
    // Compared as 64-bit signed numbers after sign extension.
    if (length < 8) c.operand |= ~width_mask;
  } else {
    if ((*n & ~width_mask) != 0) {
      return Invalid(what + std::to_string(*n) + " does not fit in the watch's " +
                     std::to_string(length) + " byte(s)");
    }
    c.operand = *n;
  }
  c.mask &= width_mask;
  return c;
}

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
  s.changed = w.changed;
  if (!w.condition.empty()) {
    auto c = ParseCondition(w.condition, w.length);
    if (!c) return std::move(c).error();
    s.condition = *c;
  }
  if (s.filtered() && s.region.access == arch::Access::kExecute) {
    return Invalid("changed and condition apply to data watches, not execute breakpoints");
  }
  if (s.changed && w.length > 64) {
    return Invalid("changed compares at most 64 bytes; this watch has " + std::to_string(w.length));
  }
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
