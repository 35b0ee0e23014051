// libFuzzer target: region decomposition. Random regions, modes and
// register counts; every plan must cover the region with registers the
// hardware can express (x86: naturally aligned 1/2/4/8; arm64: inside one
// aligned doubleword), in order, without overlap, no more than allowed.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/region.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hwwatch::arch;
  if (size < 20) return 0;
  uint64_t address, length;
  std::memcpy(&address, data, 8);
  std::memcpy(&length, data + 8, 8);
  const Arch arch = data[16] & 1 ? Arch::kAarch64 : Arch::kX86_64;
  const CoverMode mode = data[17] & 1 ? CoverMode::kOverCover : CoverMode::kExact;
  const Access access = static_cast<Access>(data[18] % 4);
  const unsigned available = 1 + data[19] % 8;
  // Mostly small regions (the interesting ones), sometimes any.
  if (!(data[16] & 2)) length = length % 80;
  const Region r{address, length, access};
  auto plan = PlanCover(arch, r, mode, available);
  if (!plan.ok()) return 0;
  const Cover& c = plan.value();
  if (c.needed() == 0 || c.needed() > available) __builtin_trap();
  if (access == Access::kExecute) return 0;
  uint64_t next = c.registers.front().address;
  for (const CoverRegister& reg : c.registers) {
    if (reg.length == 0 || reg.address < next) __builtin_trap();  // ordered, no overlap
    if (arch == Arch::kX86_64) {
      if (reg.length != 1 && reg.length != 2 && reg.length != 4 && reg.length != 8) {
        __builtin_trap();
      }
      if (reg.address % reg.length != 0) __builtin_trap();
    } else if (reg.address / 8 != (reg.address + reg.length - 1) / 8) {
      __builtin_trap();  // one doubleword per register
    }
    next = reg.address + reg.length;
  }
  // A plan's region ends below 2^64, its cover may end at 2^64 (a block
  // holding the last bytes): compare by difference, never by sum.
  const uint64_t end = r.address + r.length;
  if (c.covered_address > r.address || end - c.covered_address > c.covered_length) {
    __builtin_trap();
  }
  if (mode == CoverMode::kExact && !c.exact) __builtin_trap();
  return 0;
}
