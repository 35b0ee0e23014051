// libFuzzer target: request validation. Any bytes parsed as a ReserveRequest
// go through the service edge's conversion, CheckTarget and CheckWatch for an x86-64 and an arm64
// host; nothing may crash, and an accepted watch's cover must hold the region within the host's
// registers.
#include <cstddef>
#include <cstdint>

#include <google/protobuf/stubs/logging.h>

#include "arch/capabilities.h"
#include "daemon/convert.h"
#include "daemon/request_check.h"
#include "hwwatch/v1/hwwatch.pb.h"

namespace {

hwwatch::arch::HostCapabilities Host(hwwatch::arch::Arch a) {
  hwwatch::arch::HostCapabilities c;
  c.arch = a;
  c.cpus = 4;
  if (a == hwwatch::arch::Arch::kX86_64) {
    c.pools = {{{hwwatch::arch::SlotType::kData, hwwatch::arch::SlotType::kInst}, 4}};
  } else {
    c.pools = {{{hwwatch::arch::SlotType::kData}, 4}, {{hwwatch::arch::SlotType::kInst}, 6}};
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const hwwatch::arch::HostCapabilities hosts[] = {Host(hwwatch::arch::Arch::kX86_64),
                                                          Host(hwwatch::arch::Arch::kAarch64)};
  static google::protobuf::LogSilencer quiet;  // invalid UTF-8 in strings is expected
  hwwatch::v1::ReserveRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  for (const auto& host : hosts) {
    auto target = hwwatch::daemon::CheckTarget(hwwatch::daemon::FromProto(req.target()), host.cpus);
    if (!target) continue;
    auto watch =
        hwwatch::daemon::CheckWatch(hwwatch::daemon::FromProto(req.watch()), *target, host);
    if (!watch) continue;
    const auto& cover = watch->cover;
    if (cover.registers.empty() || cover.needed() > 6) __builtin_trap();
    if (watch->region.access != hwwatch::arch::Access::kExecute &&
        (cover.covered_address > watch->region.address ||
         watch->region.end() - cover.covered_address > cover.covered_length)) {
      // The cover must hold the whole region. Compared by difference: a
      // cover of the top bytes (a CPU target's) ends at 2^64.
      __builtin_trap();
    }
  }
  return 0;
}
