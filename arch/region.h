// Region decomposition (pure): which debug registers watch an arbitrary
// byte range.
//
// One register watches: on x86 a naturally aligned 1, 2, 4 or 8 byte block
// (execute: the instruction's first byte); on arm64 any contiguous bytes of
// one aligned 8-byte doubleword, which is what Linux accepts through ptrace
// and perf (execute: one 4-byte aligned A64 instruction). Linux does not
// expose arm64's MASK field, so no register covers more than 8 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "arch/result.h"

namespace hwwatch::arch {

struct Region {
  uint64_t address = 0;
  uint64_t length = 0;  // >= 1
  Access access = Access::kWrite;

  uint64_t end() const { return address + length; }
  bool Contains(uint64_t a) const { return a >= address && a - address < length; }
};

enum class CoverMode {
  // The union of the registers is exactly the region: no false hits.
  kExact,
  // Fewest registers; the registers may watch bytes beside the region
  // (Cover::covered_*), so hits there must be filtered out by the caller.
  kOverCover,
};

// The bytes one register watches.
struct CoverRegister {
  uint64_t address = 0;
  uint64_t length = 0;
  friend bool operator==(const CoverRegister&, const CoverRegister&) = default;
};

struct Cover {
  Access access = Access::kWrite;
  std::vector<CoverRegister> registers;  // sorted by address, disjoint
  // The smallest range holding every watched byte; equals the region when
  // `exact` (execute covers are the whole instruction and count as exact).
  uint64_t covered_address = 0;
  uint64_t covered_length = 0;
  bool exact = true;

  unsigned needed() const { return static_cast<unsigned>(registers.size()); }
  // What perf_event_open / ptrace receive for register i on `arch` (x86
  // execute: bp_len = sizeof(long), see PerfExecuteLength).
  BreakpointSpec Spec(Arch arch, unsigned i) const;
};

// The fewest registers `arch` needs for `region` in `mode` (regardless of
// how many the pool has). Errors: EINVAL for an empty region, one whose end
// (address + length) does not fit in 64 bits,
// a misaligned/oversized execute region; EOPNOTSUPP for an access the
// architecture lacks (x86 read-only) or an unknown architecture.
// An address as messages print it: "0x" and lowercase hex digits.
std::string Hex(uint64_t v);

Result<Cover> ComputeCover(Arch arch, const Region& region, CoverMode mode);

// ComputeCover limited to `available` registers. In kExact mode the exact
// cover or E2BIG; in kOverCover mode the exact cover when it fits, else the
// fewest-register cover when that fits, else E2BIG. The E2BIG message names
// the number of registers the region would need; RegistersNeeded() gives it
// as a number.
Result<Cover> PlanCover(Arch arch, const Region& region, CoverMode mode, unsigned available);

// Registers the region needs in `mode`, or 0 when it cannot be watched.
unsigned RegistersNeeded(Arch arch, const Region& region, CoverMode mode);

}  // namespace hwwatch::arch
