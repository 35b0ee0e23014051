#include "arch/region.h"

#include <cerrno>
#include <cstdio>

#include "arch/perf_event.h"

namespace hwwatch::arch {
namespace {

constexpr uint64_t kWord = 8;  // widest register on both architectures

uint64_t AlignDown(uint64_t v, uint64_t a) { return v & ~(a - 1); }

// Exact x86 cover: walking from the start, take the largest naturally
// aligned block (<= 8 bytes) that starts here and stays inside the region.
// Each step's block is as large as alignment allows, so no cover of the
// region can use fewer blocks (a block never crosses the alignment boundary
// that limits the greedy one).
std::vector<CoverRegister> X86Exact(uint64_t begin, uint64_t end) {
  std::vector<CoverRegister> regs;
  uint64_t p = begin;
  while (p < end) {
    uint64_t size = kWord;
    while (size > 1 && (p % size != 0 || end - p < size)) size /= 2;
    regs.push_back({p, size});
    p += size;
  }
  return regs;
}

// Fewest x86 registers: a block never crosses an aligned doubleword, so
// every touched doubleword needs its own register; one suffices, the
// smallest aligned block holding that doubleword's part of the region.
std::vector<CoverRegister> X86Fewest(uint64_t begin, uint64_t end) {
  std::vector<CoverRegister> regs;
  // Stops at the doubleword holding the end: `w += kWord` may not wrap
  // around at the top of the address space.
  for (uint64_t w = AlignDown(begin, kWord);; w += kWord) {
    uint64_t s = std::max(begin, w);
    uint64_t e = end - w <= kWord ? end : w + kWord;
    uint64_t size = 1;
    while (e - AlignDown(s, size) > size) size *= 2;  // no sum: it may wrap at the top
    regs.push_back({AlignDown(s, size), size});
    if (end - w <= kWord) break;
  }
  return regs;
}

// arm64: one register per touched doubleword, watching exactly the
// region's bytes in it. Already the fewest (a register never spans two
// doublewords), so both modes use it.
std::vector<CoverRegister> Arm64Exact(uint64_t begin, uint64_t end) {
  std::vector<CoverRegister> regs;
  for (uint64_t w = AlignDown(begin, kWord);; w += kWord) {  // as in X86Fewest
    uint64_t s = std::max(begin, w);
    uint64_t e = end - w <= kWord ? end : w + kWord;
    regs.push_back({s, e - s});
    if (end - w <= kWord) break;
  }
  return regs;
}

Result<Cover> ExecuteCover(Arch arch, const Region& r) {
  Cover c;
  c.access = r.access;
  uint64_t insn = arch == Arch::kAarch64 ? 4 : 1;
  if (r.length > insn) {
    return Error{EINVAL, "an execute breakpoint covers one instruction (" + std::to_string(insn) +
                             " byte(s) on " + std::string(ArchName(arch)) + "), not " +
                             std::to_string(r.length)};
  }
  if (arch == Arch::kAarch64 && r.address % 4 != 0) {
    return Error{EINVAL, "arm64 instructions are 4-byte aligned: " + Hex(r.address)};
  }
  c.registers = {{r.address, insn}};
  c.covered_address = r.address;
  c.covered_length = insn;
  c.exact = true;
  return c;
}

}  // namespace

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

BreakpointSpec Cover::Spec(Arch arch, unsigned i) const {
  const CoverRegister& reg = registers.at(i);
  uint64_t length = access == Access::kExecute ? PerfExecuteLength(arch) : reg.length;
  return BreakpointSpec{reg.address, length, access};
}

Result<Cover> ComputeCover(Arch arch, const Region& r, CoverMode mode) {
  if (r.length == 0) return Error{EINVAL, "empty region"};
  if (r.address + r.length <= r.address) {  // end must be representable
    return Error{EINVAL, "region wraps the address space: " + Hex(r.address)};
  }
  if (arch != Arch::kX86_64 && arch != Arch::kAarch64) {
    return Error{EOPNOTSUPP, "no debug register model for " + std::string(ArchName(arch))};
  }
  if (r.access == Access::kExecute) return ExecuteCover(arch, r);
  if (arch == Arch::kX86_64 && r.access == Access::kRead) {
    return Error{EOPNOTSUPP, "x86 has no read-only watch (use read_write)"};
  }
  Cover c;
  c.access = r.access;
  if (arch == Arch::kAarch64) {
    c.registers = Arm64Exact(r.address, r.end());
  } else if (mode == CoverMode::kExact) {
    c.registers = X86Exact(r.address, r.end());
  } else {
    c.registers = X86Fewest(r.address, r.end());
  }
  const CoverRegister& last = c.registers.back();
  c.covered_address = c.registers.front().address;
  c.covered_length = last.address + last.length - c.covered_address;
  c.exact = c.covered_address == r.address && c.covered_length == r.length;
  return c;
}

unsigned RegistersNeeded(Arch arch, const Region& region, CoverMode mode) {
  Result<Cover> c = ComputeCover(arch, region, mode);
  return c.ok() ? c->needed() : 0;
}

Result<Cover> PlanCover(Arch arch, const Region& region, CoverMode mode, unsigned available) {
  // A data register never spans two aligned doublewords (on either
  // architecture): a region touching far more doublewords than there are
  // registers is refused without walking it (smaller ones get the exact
  // count below).
  if (region.access != Access::kExecute && region.length > 64 * kWord &&
      region.address + region.length > region.address) {
    const uint64_t words =
        (AlignDown(region.address + region.length - 1, kWord) - AlignDown(region.address, kWord)) /
            kWord +
        1;
    if (words > available) {
      return Error{E2BIG, "region " + Hex(region.address) + " +" + std::to_string(region.length) +
                              " needs at least " + std::to_string(words) + " registers; " +
                              std::to_string(available) + " available"};
    }
  }
  Result<Cover> exact = ComputeCover(arch, region, CoverMode::kExact);
  if (!exact.ok()) return exact;
  if (exact->needed() <= available) return exact;
  unsigned needed = exact->needed();
  if (mode == CoverMode::kOverCover) {
    Result<Cover> fewest = ComputeCover(arch, region, CoverMode::kOverCover);
    if (!fewest.ok()) return fewest;
    if (fewest->needed() <= available) return fewest;
    needed = fewest->needed();
  }
  return Error{E2BIG, "region " + Hex(region.address) + " +" + std::to_string(region.length) +
                          " needs " + std::to_string(needed) + " registers; " +
                          std::to_string(available) + " available"};
}

}  // namespace hwwatch::arch
