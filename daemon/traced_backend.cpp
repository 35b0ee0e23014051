#include "daemon/traced_backend.h"

namespace hwwatch::daemon {

TraceUse TracedBackend::UseFor(const ArmSpec& spec) const {
  TraceUse use;
  use.group = spec.group;
  use.perf_stop = spec.how.daemon_stops;
  for (unsigned i = 0; i < spec.watch->cover.needed(); ++i) {
    use.specs.push_back(spec.watch->cover.Spec(caps_.arch, i));
  }
  if (spec.capture) {
    use.capture_address = spec.watch->region.address;
    use.capture_length = CaptureLength(spec.watch->region);
  }
  return use;
}

void TracedBackend::Follow(pid_t tgid, const ThreadArm& first, const ArmSpec& spec) {
  TraceUse use = UseFor(spec);
  use.slots = first.slots;
  tracer_.Follow(tgid, use);
}

}  // namespace hwwatch::daemon
