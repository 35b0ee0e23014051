// How a reservation reaches the registers: one interface, one
// implementation per file.
//
//   perf_events_backend   perf events the daemon opens and holds: counting,
//                         and stops that the caller's own debugger takes
//   perf_samples_backend  perf events writing samples to a ring the sample
//                         reader drains
//   tracer_stops_backend  perf stop events the tracer opens on threads it
//                         traces, taking their SIGTRAPs itself
//   ptrace_backend        the tracer writes the debug registers, in slots
//                         the ptrace slot bank accounts
//
// The manager drives them in the same order for every reservation: Admit
// (accounting), Arm (the kernel), and Disarm, which undoes both; Move for
// a modify. Hits go to the daemon's HitSink (daemon/hit_sink.h).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "arch/perf_event.h"
#include "arch/scoped_fd.h"
#include "daemon/engine/constraints.h"
#include "daemon/error.h"
#include "daemon/request_check.h"
#include "daemon/sample_reader.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

// What is armed on one thread (or one CPU) for a group of registers. Each
// backend uses the fields it needs.
struct ThreadArm {
  pid_t tid = -1;  // -1: a CPU target
  engine::ReservationId engine_id = 0;
  // The tracer holds the thread for group `traced_group` (0: not traced).
  uint64_t traced_group = 0;
  // ptrace backend: the debug register index of each register.
  std::vector<unsigned> slots;
  arch::SlotType slot_type = arch::SlotType::kData;
  // Counting and stop events; with samples, the region's registers after
  // the first (they write into its ring).
  std::vector<arch::PerfBreakpoint> events;
  // Sample delivery: the first register with the ring, shared with the
  // reader.
  std::vector<std::shared_ptr<SampledEvent>> sampled;
  // BPF capture: the perf link of each event (links[i] holds events[i];
  // empty where the event carries the program itself), and the group
  // whose watch the program has for this arm.
  std::vector<arch::ScopedFd> links;
  uint64_t capture_group = 0;
  // A debugger's stops: the debugger's process when armed, and the group
  // whose guard the links carry.
  pid_t tracer_tgid = 0;
  uint64_t guard_group = 0;
  // Inherited events: the kernel copies them into every thread this one
  // starts. Such an arm outlives its thread (closing its event would close
  // the copies), so `exited` marks it instead.
  bool inherits = false;
  bool exited = false;
  // A thread the kernel armed at clone from an inherited event: accounted
  // in the engine, nothing of its own to close.
  bool kernel_armed = false;
  // Where the thread last ran (-1: not known): the perf backends arm it
  // from that CPU (see fan_out.h).
  int last_cpu = -1;
};

// What to arm: the watch, and how its hits are delivered.
struct ArmSpec {
  const WatchSpec* watch = nullptr;
  arch::SlotType type = arch::SlotType::kData;
  arch::PerfOptions options;  // sig_data is the group id
  ArmHow how;
  bool capture = false;  // hits carry the watched bytes
  uint64_t group = 0;
  // A process target on a backend that Inherits(): the events are
  // inherited by threads created later.
  bool inherit = false;
  pid_t tgid = 0;  // the process (inherit)
};

// Bytes of a watched region that a hit reports (Hit.value).
inline uint32_t CaptureLength(const arch::Region& region) {
  return static_cast<uint32_t>(std::min<uint64_t>(region.length, 64));
}

class Backend {
 public:
  virtual ~Backend() = default;

  // Accounts `weight` registers of `type` on `where` (a thread or CPU):
  // a ThreadArm with the admission filled in, or why it does not fit.
  virtual Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                                  const ArmHow& how) = 0;
  // Arms the admitted `arm` in the kernel. On failure the caller disarms it.
  virtual std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec& where,
                                     const ArmSpec& spec) = 0;
  // Closes what Arm opened and gives back what Admit took. Idempotent.
  virtual void Disarm(ThreadArm& arm) = 0;

  // Arm and Disarm for many threads of one process (each arm's tid is its
  // thread). A backend that does better than one thread at a time
  // overrides them (the tracer stops all the threads together; the perf
  // backends spread the threads over a FanOut). ArmAll
  // gives one result per arm, in order, and may leave the arms after a
  // failure unarmed; the caller disarms every failed one.
  virtual std::vector<std::optional<Problem>> ArmAll(std::vector<ThreadArm>& arms,
                                                     const ArmSpec& spec) {
    std::vector<std::optional<Problem>> out;
    bool stop = false;
    for (ThreadArm& arm : arms) {
      if (stop) {
        out.push_back(MakeProblem(Code::kInternal, "not armed: an earlier thread failed"));
        continue;
      }
      out.push_back(Arm(arm, {TargetSpec::Kind::kThread, arm.tid, 0}, spec));
      stop = out.back() && out.back()->code != Code::kNotFound;
    }
    return out;
  }
  virtual void DisarmAll(std::vector<ThreadArm>& arms) {
    for (ThreadArm& arm : arms) Disarm(arm);
  }

  // Moves every arm to `to` in the kernel, or none: on failure each arm is
  // back on `from`, still armed. `where(arm)` is the arm's thread or CPU.
  // Unless AccountsItself(), the engine was changed by the caller first.
  virtual std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec& target,
                                      const WatchSpec& from, const ArmSpec& to) = 0;
  // Move does its own accounting (the ptrace slot bank).
  virtual bool AccountsItself() const { return false; }
  // Process targets: the kernel arms new threads at clone (inherited
  // events); the manager only accounts them when it finds them.
  virtual bool Inherits() const { return false; }
  // What became of the hits of a group's arms: {delivered, filtered,
  // lost}, where the backend knows (else all counted hits are delivered).
  struct Fates {
    uint64_t delivered = 0, filtered = 0, lost = 0;
  };
  virtual std::optional<Fates> FatesOf(uint64_t /*group*/) const { return std::nullopt; }

  // Threads `tgid` starts from now on get `spec` before they first run
  // (`first` is the process's first arm). Only backends whose tracer sees
  // clones do anything; the others' new threads are found in /proc.
  virtual void Follow(pid_t /*tgid*/, const ThreadArm& /*first*/, const ArmSpec& /*spec*/) {}
  virtual void Unfollow(pid_t /*tgid*/, uint64_t /*group*/) {}

  // Hits the kernel counted on `arm` (0 where the backend does not count).
  virtual uint64_t Hits(const ThreadArm& arm) const = 0;
  // False where no kernel counter exists (the tracer's registers and
  // stops): the published hits are the count.
  virtual bool KernelCounts() const { return true; }
};

// A process's arm lives on its thread; a thread or CPU target's on itself.
inline TargetSpec WhereArmed(const TargetSpec& target, const ThreadArm& arm) {
  return target.kind == TargetSpec::Kind::kProcess
             ? TargetSpec{TargetSpec::Kind::kThread, arm.tid, 0}
             : target;
}

}  // namespace hwwatch::daemon
