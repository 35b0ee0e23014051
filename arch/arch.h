// Architecture-neutral vocabulary shared by the arch/ backends, the engine
// and the daemon. Nothing here touches the kernel.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hwwatch::arch {

enum class Arch { kUnknown, kX86_64, kAarch64 };

// What kind of access triggers a watch.
enum class Access { kWrite, kReadWrite, kExecute, kRead };

// The kernel's breakpoint types: TYPE_INST and TYPE_DATA.
enum class SlotType { kInst, kData };

// Where an access of this kind is accounted.
constexpr SlotType SlotTypeOf(Access a) {
  return a == Access::kExecute ? SlotType::kInst : SlotType::kData;
}

std::string_view ArchName(Arch a);
std::string_view AccessName(Access a);

// A pool of interchangeable registers on each CPU.
struct SlotPool {
  std::vector<SlotType> types;  // both on x86 (mixed pool)
  unsigned slots = 0;
  bool mixed() const { return types.size() > 1; }
};

// What one register can cover for one access type.
struct AccessRule {
  Access access;
  std::vector<unsigned> lengths;   // lengths one register covers
  bool naturally_aligned = false;  // address % length == 0 (x86)
  unsigned word_size = 0;          // any byte range inside one aligned word (arm64: 8)
};

// What one register watches (perf and ptrace backends). `length` is in bytes as perf expects it:
// 1, 2, 4 or 8 for data on x86 (naturally aligned); 1..8 inside one aligned
// 8-byte word on arm64; for execute breakpoints use PerfExecuteLength().
struct BreakpointSpec {
  uint64_t address = 0;
  uint64_t length = 0;
  Access access = Access::kWrite;
};

#if defined(__x86_64__)
constexpr Arch kHostArch = Arch::kX86_64;
#elif defined(__aarch64__)
constexpr Arch kHostArch = Arch::kAarch64;
#else
constexpr Arch kHostArch = Arch::kUnknown;
#endif

// Whether a data hit traps before the access (arm64: the memory still holds
// the old bytes, and the kernel steps over the access after the trap) or
// after it (x86).
constexpr bool kDataTrapBeforeAccess = kHostArch == Arch::kAarch64;

}  // namespace hwwatch::arch
