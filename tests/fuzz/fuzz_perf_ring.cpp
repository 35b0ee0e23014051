// libFuzzer target: the perf ring-buffer parser on hostile rings (any
// bytes, counters and sample types). It must never read outside the area,
// never move the tail past the head or backwards, and report what it parsed.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "arch/perf_ring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 24) return 0;
  uint64_t tail, head, sample_type;
  std::memcpy(&tail, data, 8);
  std::memcpy(&head, data + 8, 8);
  std::memcpy(&sample_type, data + 16, 8);
  // The data area: the rest, padded to a power of two (as the kernel's).
  size_t area = 1;
  while (area < size - 24) area *= 2;
  std::vector<uint8_t> ring(area, 0);
  std::memcpy(ring.data(), data + 24, size - 24);
  tail %= 4 * area;
  head = tail + head % (area + 2);  // sometimes more than the area: refused
  const auto p = hwwatch::arch::ParsePerfRing(ring, tail, head, sample_type);
  if (p.new_tail < tail || p.new_tail > head) __builtin_trap();
  for (const auto& r : p.records) {
    if (r.kind == hwwatch::arch::PerfRecord::Kind::kSample && r.type != 9) __builtin_trap();
  }
  return 0;
}
