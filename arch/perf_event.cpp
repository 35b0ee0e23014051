#include "arch/perf_event.h"

#include <linux/hw_breakpoint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace hwwatch::arch {
namespace {

long PerfEventOpen(perf_event_attr* attr, pid_t pid, int cpu, int group_fd, unsigned long flags) {
  return syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags);
}

std::string Describe(const BreakpointSpec& s, PerfTarget t) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "perf_event_open(breakpoint %s 0x%llx len %llu, pid %d, cpu %d)",
                std::string(AccessName(s.access)).c_str(),
                static_cast<unsigned long long>(s.address),
                static_cast<unsigned long long>(s.length), static_cast<int>(t.pid), t.cpu);
  return buf;
}

}  // namespace

uint32_t PerfBpType(Access a) {
  switch (a) {
    case Access::kWrite:
      return HW_BREAKPOINT_W;
    case Access::kReadWrite:
      return HW_BREAKPOINT_RW;
    case Access::kExecute:
      return HW_BREAKPOINT_X;
    case Access::kRead:
      return HW_BREAKPOINT_R;
  }
  return HW_BREAKPOINT_EMPTY;
}

perf_event_attr BuildBreakpointAttr(const BreakpointSpec& spec, const PerfOptions& options) {
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.type = PERF_TYPE_BREAKPOINT;
  attr.size = sizeof attr;
  attr.bp_type = PerfBpType(spec.access);
  attr.bp_addr = spec.address;
  attr.bp_len = spec.length;
  // Every hit is one event: period 1 makes each hit an overflow, which is
  // what produces a sample record or a SIGTRAP; counting works either way.
  attr.sample_period = 1;
  attr.disabled = options.start_disabled ? 1 : 0;
  attr.exclude_kernel = options.exclude_kernel ? 1 : 0;
  attr.exclude_hv = 1;
  attr.inherit = options.inherit ? 1 : 0;
  attr.remove_on_exec = options.remove_on_exec ? 1 : 0;
  if (options.sampling) {
    attr.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR;
    attr.wakeup_events = 1;  // poll() wakes at every sample
    if (options.wakeup_bytes > 0) {
      attr.watermark = 1;
      attr.wakeup_watermark = options.wakeup_bytes;
    } else if (options.exec_records) {
      attr.comm = 1;
      attr.comm_exec = 1;
      // Side-band records do not count as events for wakeup_events: wake
      // poll() at any byte instead (a sample is a record too).
      attr.watermark = 1;
      attr.wakeup_watermark = 1;
    }
  }
  if (options.sigtrap) {
    attr.sigtrap = 1;
    attr.remove_on_exec = 1;
    attr.sig_data = options.sig_data;
  }
  return attr;
}

Result<PerfBreakpoint> PerfBreakpoint::Open(const BreakpointSpec& spec, PerfTarget target,
                                            const PerfOptions& options) {
  perf_event_attr attr = BuildBreakpointAttr(spec, options);
  long fd = PerfEventOpen(&attr, target.pid, target.cpu, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) return ErrnoError(Describe(spec, target));
  return PerfBreakpoint(ScopedFd(static_cast<int>(fd)), spec, target, attr);
}

Result<uint64_t> PerfBreakpoint::ReadCount() const {
  uint64_t count = 0;
  ssize_t n = ::read(fd_.get(), &count, sizeof count);
  if (n < 0) return ErrnoError("read(perf breakpoint)");
  if (n != sizeof count) return PlainError("read(perf breakpoint): short read");
  return count;
}

Status PerfBreakpoint::Enable() {
  if (ioctl(fd_.get(), PERF_EVENT_IOC_ENABLE, 0) != 0) return ErrnoError("PERF_EVENT_IOC_ENABLE");
  attr_.disabled = 0;
  return OkStatus();
}

Status PerfBreakpoint::Disable() {
  if (ioctl(fd_.get(), PERF_EVENT_IOC_DISABLE, 0) != 0) return ErrnoError("PERF_EVENT_IOC_DISABLE");
  attr_.disabled = 1;
  return OkStatus();
}

Status PerfBreakpoint::ResetCount() {
  if (ioctl(fd_.get(), PERF_EVENT_IOC_RESET, 0) != 0) return ErrnoError("PERF_EVENT_IOC_RESET");
  return OkStatus();
}

Status PerfBreakpoint::SetOutput(const PerfBreakpoint& to) {
  if (ioctl(fd_.get(), PERF_EVENT_IOC_SET_OUTPUT, to.fd()) != 0) {
    return ErrnoError("PERF_EVENT_IOC_SET_OUTPUT");
  }
  return OkStatus();
}

Status PerfBreakpoint::Modify(const BreakpointSpec& spec) {
  perf_event_attr attr = attr_;
  attr.bp_type = PerfBpType(spec.access);
  attr.bp_addr = spec.address;
  attr.bp_len = spec.length;
  if (ioctl(fd_.get(), PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &attr) != 0) {
    return ErrnoError("PERF_EVENT_IOC_MODIFY_ATTRIBUTES");
  }
  attr_ = attr;
  spec_ = spec;
  return OkStatus();
}

Result<unsigned> KernelFreeSlots(PerfTarget target, SlotType type, unsigned most) {
  // Any address will do: the events are never enabled. x86's one pool
  // serves both types (a write watch takes the same slot); arm64's
  // breakpoints take 4-byte instructions.
  static const uint64_t probe_word = 0;
  const uint64_t at = reinterpret_cast<uint64_t>(&probe_word);
  const bool inst = type == SlotType::kInst && kHostArch != Arch::kX86_64;
  const BreakpointSpec spec =
      inst ? BreakpointSpec{at, 4, Access::kExecute} : BreakpointSpec{at, 8, Access::kWrite};
  PerfOptions options;
  options.start_disabled = true;
  options.exclude_kernel = true;
  std::vector<PerfBreakpoint> held;
  while (held.size() < most) {
    auto bp = PerfBreakpoint::Open(spec, target, options);
    if (!bp) {
      if (bp.error().Is(ENOSPC)) break;
      return bp.error();
    }
    held.push_back(std::move(bp.value()));
  }
  return static_cast<unsigned>(held.size());
}

}  // namespace hwwatch::arch
