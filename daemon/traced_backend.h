// What the two backends the tracer carries out share (tracer_stops_backend,
// ptrace_backend): the TraceUse of a spec, and new threads of a followed
// process that the tracer arms at clone, before they run.
#pragma once

#include "arch/capabilities.h"
#include "daemon/backend.h"
#include "daemon/tracer.h"

namespace hwwatch::daemon {

class TracedBackend : public Backend {
 public:
  // New threads get the first thread's registers (`first.slots`: ptrace's
  // indices, free on a new thread; none for perf stops).
  void Follow(pid_t tgid, const ThreadArm& first, const ArmSpec& spec) override;
  void Unfollow(pid_t tgid, uint64_t group) override { tracer_.Unfollow(tgid, group); }
  // The tracer counts no hits of its own.
  uint64_t Hits(const ThreadArm&) const override { return 0; }
  bool KernelCounts() const override { return false; }

 protected:
  TracedBackend(const arch::HostCapabilities& caps, Tracer& tracer)
      : caps_(caps), tracer_(tracer) {}
  // What the tracer does on a thread for `spec` (slots left to the caller).
  TraceUse UseFor(const ArmSpec& spec) const;

  const arch::HostCapabilities& caps_;
  Tracer& tracer_;
};

}  // namespace hwwatch::daemon
