#include "daemon/perf_samples_backend.h"

namespace hwwatch::daemon {

namespace {

// Ring of a sampling reservation (shared by the registers of its region):
// 4 data pages hold ~290 samples. The reader is woken once a quarter of it
// waits (not at every sample: a wake-up per hit costs the trapping CPU),
// and drains every ring every SampleReader::kDrainMs besides. Rings count
// against perf_event_mlock_kb unless the daemon has CAP_IPC_LOCK.
constexpr size_t kRingPages = 4;

}  // namespace

std::optional<Problem> PerfSamplesBackend::Arm(ThreadArm& arm, const TargetSpec& where,
                                               const ArmSpec& spec) {
  const WatchSpec& watch = *spec.watch;
  auto failed = [&](const arch::Error& err) {
    return ProblemFromErrno(err, KernelStep::kArm, where.tid, watch.weight());
  };
  for (unsigned i = 0; i < watch.cover.needed(); ++i) {
    // The ring's own event also reports the task's exec (task targets).
    arch::PerfOptions these = spec.options;
    these.exec_records = i == 0 && where.is_task();
    these.wakeup_bytes = static_cast<uint32_t>(kRingPages * sysconf(_SC_PAGESIZE) / 4);
    auto bp = Open(watch, i, where, these);
    if (!bp) return failed(bp.error());
    if (!arm.sampled.empty()) {
      // Further registers of the region write into the first one's ring.
      if (arch::Status out = bp->SetOutput(arm.sampled.front()->event); !out.ok()) {
        return failed(out.error());
      }
      arm.events.push_back(std::move(bp.value()));
      continue;
    }
    auto ring = arch::PerfRingBuffer::Map(bp->fd(), kRingPages,
                                          arch::BuildBreakpointAttr(bp->spec(), these).sample_type);
    if (!ring) return failed(ring.error());
    auto se = std::make_shared<SampledEvent>(SampledEvent{
        std::move(bp.value()), std::move(ring.value()), spec.group, arm.tid, 0, 0, {}});
    if (spec.capture) {
      se->capture_address = watch.region.address;
      se->capture_length = CaptureLength(watch.region);
    }
    for (const auto& reg : watch.cover.registers) se->registers.push_back(reg.address);
    arm.sampled.push_back(std::move(se));
  }
  for (const auto& se : arm.sampled) {
    if (std::string why = reader_.Add(se); !why.empty()) {
      return failed(arch::Error{EIO, "cannot follow the samples: " + why});
    }
  }
  return std::nullopt;
}

void PerfSamplesBackend::Disarm(ThreadArm& arm) {
  // The reader lets go of the rings before their events close.
  for (const auto& se : arm.sampled) reader_.Remove(*se);
  PerfEventsBackend::Disarm(arm);
}

std::optional<Problem> PerfSamplesBackend::Move(std::vector<ThreadArm>& arms,
                                                const TargetSpec& target, const WatchSpec& from,
                                                const ArmSpec& to) {
  if (auto no = PerfEventsBackend::Move(arms, target, from, to)) return no;
  // The reader reports the new registers and bytes from now on.
  std::vector<uint64_t> regs;
  for (const auto& reg : to.watch->cover.registers) regs.push_back(reg.address);
  const uint64_t capture_address = to.capture ? to.watch->region.address : 0;
  const uint32_t capture_length = to.capture ? CaptureLength(to.watch->region) : 0;
  for (ThreadArm& arm : arms) {
    for (auto& se : arm.sampled) {
      reader_.Update(*se, [&](SampledEvent& s) {
        s.registers = regs;
        s.capture_address = capture_address;
        s.capture_length = capture_length;
      });
    }
  }
  return std::nullopt;
}

}  // namespace hwwatch::daemon
