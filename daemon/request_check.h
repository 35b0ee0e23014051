// Validation of watch requests against what this host can do. Pure: no
// system calls; the existence of targets is checked elsewhere.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "arch/capabilities.h"
#include "arch/region.h"
#include "daemon/problem.h"
#include "hwwatch/v1/hwwatch.pb.h"

namespace hwwatch::daemon {

struct TargetSpec {
  enum class Kind { kThread, kProcess, kCpu, kThreadOnCpu };
  Kind kind = Kind::kThread;
  pid_t tid = 0;     // thread or process id (unused for kCpu)
  unsigned cpu = 0;  // kCpu and kThreadOnCpu

  bool is_task() const { return kind != Kind::kCpu; }
};

struct WatchSpec {
  arch::Region region;
  arch::CoverMode mode = arch::CoverMode::kExact;
  // The registers chosen for it.
  arch::Cover cover;
  unsigned weight() const { return cover.needed(); }
};

// Highest user-space address + 1 on this architecture (x86-64: 47-bit
// user half; arm64: 48-bit VA, the kernel's TASK_SIZE_64 without LVA).
uint64_t UserAddressLimit(arch::Arch a);

Outcome<TargetSpec> CheckTarget(const hwwatch::v1::Target& t, unsigned cpus);

// Checks the watch for the target and plans its registers. Task targets
// take user-space addresses only; CPU targets may watch kernel addresses.
Outcome<WatchSpec> CheckWatch(const hwwatch::v1::Watch& w, const TargetSpec& target,
                              const arch::HostCapabilities& caps);

}  // namespace hwwatch::daemon
