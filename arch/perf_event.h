// perf_event_open(PERF_TYPE_BREAKPOINT): one hardware breakpoint owned by a
// file descriptor. The kernel reserves a debug-register slot when the event
// is opened (ENOSPC when every slot of the target's CPUs is taken) and frees
// it when the last descriptor to the event closes, so the registers never
// outlive their owner (unlike registers written through ptrace).
#pragma once

#include <linux/perf_event.h>
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <cstring>

#include "arch/arch.h"
#include "arch/result.h"
#include "arch/scoped_fd.h"

namespace hwwatch::arch {

// The bp_len perf wants for an execute breakpoint: x86 accepts only
// sizeof(long) (the hardware matches the instruction's first byte, LEN=00);
// arm64 wants 4 (one A64 instruction).
constexpr uint64_t PerfExecuteLength(Arch a) { return a == Arch::kAarch64 ? 4 : sizeof(long); }

// The perf_event_open(pid, cpu) pair.
struct PerfTarget {
  pid_t pid = -1;  // a thread id, or -1 for every task on `cpu`
  int cpu = -1;    // a CPU number, or -1 for "wherever the thread runs"

  // The thread, on whichever CPU it runs (pid = tid, cpu = -1).
  static PerfTarget Thread(pid_t tid) { return {tid, -1}; }
  // The thread, counted only while it runs on `cpu` (pid = tid, cpu = N).
  static PerfTarget ThreadOnCpu(pid_t tid, int cpu) { return {tid, cpu}; }
  // Every task on `cpu` (pid = -1, cpu = N); needs CAP_PERFMON or root.
  static PerfTarget Cpu(int cpu) { return {-1, cpu}; }
};

struct PerfOptions {
  // Open disabled; Enable() arms it. The slot is reserved either way.
  bool start_disabled = false;
  // Ignore accesses made in kernel mode (e.g. a read() syscall filling a
  // watched buffer): perf drops those events before counting them.
  bool exclude_kernel = true;
  // Sampling: write a PERF_RECORD_SAMPLE (ip, tid, time, addr) per hit into
  // the ring buffer that PerfRingBuffer maps on the fd.
  bool sampling = false;
  // Sampling: wake poll() once this many bytes wait in the ring (0: at
  // every sample). The reader must then also drain on a timer.
  uint32_t wakeup_bytes = 0;
  // Synchronous SIGTRAP to the thread that hit (si_code TRAP_PERF, si_addr
  // the data address, si_perf_data = sig_data). The kernel accepts sigtrap on
  // another task only with remove_on_exec, which is therefore set too. An
  // untraced target without a SIGTRAP handler is killed by it.
  bool sigtrap = false;
  uint64_t sig_data = 0;
  // Sampling: also write a PERF_RECORD_COMM marked PERF_RECORD_MISC_COMM_EXEC
  // into the ring when the task execs (the watched address means nothing
  // in the new image). Set on one event per ring.
  bool exec_records = false;
  // Threads the task starts from now on get a copy of the event at clone,
  // before they run (attr.inherit); read() then sums the copies' counts.
  // perf refuses mmap on such an event with cpu = -1: pair it with BPF.
  bool inherit = false;
  // The kernel removes the event when the task execs (attr.remove_on_exec).
  bool remove_on_exec = false;
};

// si_code of a SIGTRAP sent by a sigtrap-mode perf event (TRAP_PERF; not
// in glibc 2.36's headers).
inline constexpr int kTrapPerf = 6;

// The kernel's si_perf_data (= attr.sig_data) of a TRAP_PERF siginfo: the
// word after si_addr in the kernel's _sigfault layout, which glibc 2.36
// does not name.
inline uint64_t PerfSigData(const siginfo_t& si) {
  unsigned long v;
  std::memcpy(&v, reinterpret_cast<const char*>(&si.si_addr) + sizeof(void*), sizeof v);
  return v;
}

// HW_BREAKPOINT_W / RW / X / R for an access kind.
uint32_t PerfBpType(Access a);

// The attribute perf_event_open receives (pure, for tests).
perf_event_attr BuildBreakpointAttr(const BreakpointSpec& spec, const PerfOptions& options);

class PerfBreakpoint {
 public:
  // Opens the event. On failure Error::code is the errno: ENOSPC when no
  // slot is free on some CPU the target can run on, EINVAL for a length or
  // alignment the architecture refuses, ESRCH for a vanished thread,
  // EACCES/EPERM without privilege.
  static Result<PerfBreakpoint> Open(const BreakpointSpec& spec, PerfTarget target,
                                     const PerfOptions& options = {});

  PerfBreakpoint(PerfBreakpoint&&) noexcept = default;
  PerfBreakpoint& operator=(PerfBreakpoint&&) noexcept = default;

  int fd() const { return fd_.get(); }
  const BreakpointSpec& spec() const { return spec_; }
  PerfTarget target() const { return target_; }

  // Hits counted so far (read() of the event, no read_format).
  Result<uint64_t> ReadCount() const;
  Status Enable();
  Status Disable();
  Status ResetCount();
  // Sends this event's samples to the ring buffer mapped on `to`
  // (PERF_EVENT_IOC_SET_OUTPUT): both must watch the same task (or the
  // same CPU). One ring then serves every register of a region.
  Status SetOutput(const PerfBreakpoint& to);

  // Moves the breakpoint in place (PERF_EVENT_IOC_MODIFY_ATTRIBUTES): the
  // kernel accepts a new attr only when everything but bp_addr, bp_len,
  // bp_type and disabled equals the original, so the stored attr is reused.
  // The slot stays reserved (a data<->execute change may be re-accounted
  // and fail with ENOSPC on arches with separate pools). On failure the
  // event keeps its previous spec.
  Status Modify(const BreakpointSpec& spec);

 private:
  PerfBreakpoint(ScopedFd fd, const BreakpointSpec& spec, PerfTarget target,
                 const perf_event_attr& attr)
      : fd_(std::move(fd)), spec_(spec), target_(target), attr_(attr) {}

  ScopedFd fd_;
  BreakpointSpec spec_;
  PerfTarget target_;
  perf_event_attr attr_;
};

// How many more `type` slots the kernel grants `target` now, up to `most`:
// breakpoint events opened disabled (they never fire) until one is
// refused, then closed. A dry run: it holds the slots for microseconds.
// An error other than ENOSPC (a thread gone, no permission) is returned.
Result<unsigned> KernelFreeSlots(PerfTarget target, SlotType type, unsigned most);

}  // namespace hwwatch::arch
