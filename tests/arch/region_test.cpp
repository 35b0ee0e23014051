// Region decomposition: table-driven cases plus an exhaustive comparison
// with a brute-force optimum over small offsets and lengths.
#include "arch/region.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "arch/arm64_debugreg.h"
#include "arch/x86_debugreg.h"

namespace hwwatch::arch {
namespace {

using Regs = std::vector<CoverRegister>;

Region W(uint64_t a, uint64_t len) { return Region{a, len, Access::kWrite}; }

// Can one register of `arch` watch exactly [address, address + length)?
bool Legal(Arch arch, const CoverRegister& r) {
  if (r.length == 0) return false;
  if (arch == Arch::kX86_64) {
    return x86::EncodeLen(static_cast<unsigned>(r.length)).has_value() && r.length <= 8 &&
           r.address % r.length == 0;
  }
  return arm64::EncodeWatch(r.address, static_cast<unsigned>(r.length), Access::kWrite).has_value();
}

// Every legal register intersecting [lo, hi).
Regs AllLegal(Arch arch, uint64_t lo, uint64_t hi) {
  Regs out;
  for (uint64_t s = (lo & ~7ull) - 8; s < hi + 8; ++s) {
    for (uint64_t len = 1; len <= 8; ++len) {
      CoverRegister r{s, len};
      if (Legal(arch, r) && s < hi && s + len > lo) out.push_back(r);
    }
  }
  return out;
}

// Brute force: the fewest registers whose union covers [b, e), and among
// those the fewest bytes outside it. `inside` limits registers to the
// region (exact covers). Dynamic programming over "covered from b up to p":
// any cover, sorted by start, extends the covered prefix register by
// register, so this reaches the optimum.
std::pair<unsigned, uint64_t> Optimum(Arch arch, uint64_t b, uint64_t e, bool inside) {
  using Cost = std::pair<unsigned, uint64_t>;  // (registers, bytes outside)
  const Cost inf{std::numeric_limits<unsigned>::max(), 0};
  Regs legal = AllLegal(arch, b, e);
  if (inside) {
    std::erase_if(
        legal, [&](const CoverRegister& r) { return r.address < b || r.address + r.length > e; });
  }
  const uint64_t hi = e + 16;
  std::vector<Cost> dp(hi - b + 1, inf);
  for (const CoverRegister& r : legal) {
    if (r.address <= b) {
      dp[r.address + r.length - b] = std::min(dp[r.address + r.length - b], Cost{1, b - r.address});
    }
  }
  for (uint64_t p = b + 1; p < e; ++p) {
    if (dp[p - b] == inf) continue;
    for (const CoverRegister& r : legal) {
      if (r.address <= p && r.address + r.length > p) {
        Cost c{dp[p - b].first + 1, dp[p - b].second};
        dp[r.address + r.length - b] = std::min(dp[r.address + r.length - b], c);
      }
    }
  }
  Cost best = inf;
  for (uint64_t p = e; p <= hi; ++p) {
    if (dp[p - b] != inf) best = std::min(best, Cost{dp[p - b].first, dp[p - b].second + (p - e)});
  }
  return best;
}

void CheckCover(Arch arch, const Region& r, const Cover& c, bool exact_required) {
  std::set<uint64_t> watched;
  for (size_t i = 0; i < c.registers.size(); ++i) {
    const CoverRegister& reg = c.registers[i];
    ASSERT_TRUE(Legal(arch, reg)) << std::hex << reg.address << "+" << reg.length;
    if (i > 0) {
      ASSERT_GE(reg.address, c.registers[i - 1].address + c.registers[i - 1].length);
    }
    for (uint64_t a = reg.address; a < reg.address + reg.length; ++a) watched.insert(a);
  }
  for (uint64_t a = r.address; a < r.end(); ++a) ASSERT_TRUE(watched.count(a)) << a;
  ASSERT_FALSE(watched.empty());
  EXPECT_EQ(*watched.begin(), c.covered_address);
  EXPECT_EQ(*watched.rbegin() + 1, c.covered_address + c.covered_length);
  EXPECT_EQ(c.exact, watched.size() == r.length);
  if (exact_required) {
    EXPECT_EQ(watched.size(), r.length);
  }
}

struct TableCase {
  Arch arch;
  uint64_t address;
  uint64_t length;
  Regs exact;
};

TEST(RegionTest, ExactTable) {
  const TableCase cases[] = {
      {Arch::kX86_64, 0x1000, 8, {{0x1000, 8}}},
      {Arch::kX86_64, 0x1000, 1, {{0x1000, 1}}},
      {Arch::kX86_64, 0x1001, 2, {{0x1001, 1}, {0x1002, 1}}},
      {Arch::kX86_64, 0x1002, 4, {{0x1002, 2}, {0x1004, 2}}},
      {Arch::kX86_64, 0x1001, 7, {{0x1001, 1}, {0x1002, 2}, {0x1004, 4}}},
      {Arch::kX86_64, 0x1004, 12, {{0x1004, 4}, {0x1008, 8}}},
      {Arch::kX86_64,
       0x1003,
       12,
       {{0x1003, 1}, {0x1004, 4}, {0x1008, 4}, {0x100c, 2}, {0x100e, 1}}},
      {Arch::kX86_64, 0x1000, 32, {{0x1000, 8}, {0x1008, 8}, {0x1010, 8}, {0x1018, 8}}},
      {Arch::kAarch64, 0x1000, 8, {{0x1000, 8}}},
      {Arch::kAarch64, 0x1003, 3, {{0x1003, 3}}},
      {Arch::kAarch64, 0x1001, 7, {{0x1001, 7}}},
      {Arch::kAarch64, 0x1006, 4, {{0x1006, 2}, {0x1008, 2}}},
      {Arch::kAarch64, 0x1003, 12, {{0x1003, 5}, {0x1008, 7}}},
      {Arch::kAarch64, 0x1007, 10, {{0x1007, 1}, {0x1008, 8}, {0x1010, 1}}},
  };
  for (const TableCase& t : cases) {
    SCOPED_TRACE(std::string(ArchName(t.arch)) + " " + std::to_string(t.address) + "+" +
                 std::to_string(t.length));
    auto c = ComputeCover(t.arch, W(t.address, t.length), CoverMode::kExact);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->registers, t.exact);
    EXPECT_TRUE(c->exact);
    EXPECT_EQ(c->covered_address, t.address);
    EXPECT_EQ(c->covered_length, t.length);
  }
}

TEST(RegionTest, OverCoverUsesOneRegisterPerDoubleword) {
  // x86: 2 bytes at offset 1 need two exact registers; one aligned 4-byte
  // register covers them with 2 extra bytes.
  auto c = ComputeCover(Arch::kX86_64, W(0x1001, 2), CoverMode::kOverCover);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->registers, (Regs{{0x1000, 4}}));
  EXPECT_FALSE(c->exact);
  EXPECT_EQ(c->covered_address, 0x1000u);
  EXPECT_EQ(c->covered_length, 4u);
  // 12 unaligned bytes: 5 exact registers, 2 over-covering ones.
  c = ComputeCover(Arch::kX86_64, W(0x1003, 12), CoverMode::kOverCover);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->registers, (Regs{{0x1000, 8}, {0x1008, 8}}));
  // arm64 is already exact with one register per doubleword.
  c = ComputeCover(Arch::kAarch64, W(0x1003, 12), CoverMode::kOverCover);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->exact);
  EXPECT_EQ(c->needed(), 2u);
}

TEST(RegionTest, PlanRefusesWithTheCountItWouldNeed) {
  const Region r = W(0x1003, 12);
  auto exact = PlanCover(Arch::kX86_64, r, CoverMode::kExact, 4);
  ASSERT_FALSE(exact.ok());
  EXPECT_EQ(exact.error().code, E2BIG);
  EXPECT_NE(exact.error().message.find("needs 5 registers; 4 available"), std::string::npos)
      << exact.error().message;
  EXPECT_EQ(RegistersNeeded(Arch::kX86_64, r, CoverMode::kExact), 5u);
  EXPECT_EQ(RegistersNeeded(Arch::kX86_64, r, CoverMode::kOverCover), 2u);
  // Over-cover falls back to fewer registers only when the exact cover does
  // not fit.
  auto over = PlanCover(Arch::kX86_64, r, CoverMode::kOverCover, 4);
  ASSERT_TRUE(over.ok());
  EXPECT_EQ(over->needed(), 2u);
  EXPECT_FALSE(over->exact);
  auto fits = PlanCover(Arch::kX86_64, r, CoverMode::kOverCover, 5);
  ASSERT_TRUE(fits.ok());
  EXPECT_TRUE(fits->exact);
  auto none = PlanCover(Arch::kX86_64, r, CoverMode::kOverCover, 1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("needs 2 registers; 1 available"), std::string::npos);
  auto big = PlanCover(Arch::kAarch64, W(0x1000, 40), CoverMode::kExact, 4);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message.find("needs 5 registers"), std::string::npos);
  // A region of a terabyte is refused at once (not walked register by
  // register: that took the daemon minutes).
  for (Arch a : {Arch::kX86_64, Arch::kAarch64}) {
    for (CoverMode m : {CoverMode::kExact, CoverMode::kOverCover}) {
      auto huge = PlanCover(a, W(0x10000, uint64_t{1} << 40), m, 4);
      ASSERT_FALSE(huge.ok());
      EXPECT_EQ(huge.error().code, E2BIG);
      EXPECT_NE(huge.error().message.find("needs at least 137438953472 registers"),
                std::string::npos)
          << huge.error().message;
    }
  }
}

// Found by fuzz_region: a region ending in the last doubleword of the
// address space made the per-doubleword loop wrap around and never end.
TEST(RegionTest, RegionsAtTheTopOfTheAddressSpaceEnd) {
  // The last bytes of all (x86's fewest cover once doubled a block size
  // past 2^64 there and never stopped).
  for (Arch a : {Arch::kX86_64, Arch::kAarch64}) {
    auto last = ComputeCover(a, W(0xfffffffffffffff9u, 6), CoverMode::kOverCover);
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(last->needed(), 1u);
  }
  const Region top = W(0xffffffffffffffb1u, 0x40);
  for (Arch a : {Arch::kX86_64, Arch::kAarch64}) {
    for (CoverMode m : {CoverMode::kExact, CoverMode::kOverCover}) {
      auto c = ComputeCover(a, top, m);
      ASSERT_TRUE(c.ok());
      EXPECT_LE(c->needed(), 17u);
      EXPECT_EQ(c->covered_address + c->covered_length, top.address + top.length);
    }
  }
}

TEST(RegionTest, ExecuteIsOneInstruction) {
  auto x = ComputeCover(Arch::kX86_64, {0x401001, 1, Access::kExecute}, CoverMode::kExact);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->registers, (Regs{{0x401001, 1}}));
  EXPECT_EQ(x->Spec(Arch::kX86_64, 0).length, sizeof(long));  // perf's bp_len for x86 execute
  EXPECT_EQ(x->Spec(Arch::kX86_64, 0).access, Access::kExecute);
  auto a = ComputeCover(Arch::kAarch64, {0x401000, 4, Access::kExecute}, CoverMode::kExact);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->registers, (Regs{{0x401000, 4}}));
  EXPECT_EQ(a->Spec(Arch::kAarch64, 0).length, 4u);
  EXPECT_EQ(
      ComputeCover(Arch::kAarch64, {0x401002, 4, Access::kExecute}, CoverMode::kExact).error().code,
      EINVAL);
  EXPECT_EQ(
      ComputeCover(Arch::kX86_64, {0x401000, 2, Access::kExecute}, CoverMode::kExact).error().code,
      EINVAL);
}

TEST(RegionTest, RefusesInvalidRegions) {
  EXPECT_EQ(ComputeCover(Arch::kX86_64, W(0x1000, 0), CoverMode::kExact).error().code, EINVAL);
  EXPECT_EQ(ComputeCover(Arch::kX86_64, W(~0ull - 2, 8), CoverMode::kExact).error().code, EINVAL);
  EXPECT_EQ(ComputeCover(Arch::kX86_64, {0x1000, 4, Access::kRead}, CoverMode::kExact).error().code,
            EOPNOTSUPP);
  EXPECT_TRUE(ComputeCover(Arch::kAarch64, {0x1000, 4, Access::kRead}, CoverMode::kExact).ok());
  EXPECT_EQ(ComputeCover(Arch::kUnknown, W(0x1000, 4), CoverMode::kExact).error().code, EOPNOTSUPP);
  // The end must be representable: the last doubleword of the address space
  // (kernel space anyway) is refused, the one before it is accepted.
  EXPECT_EQ(ComputeCover(Arch::kX86_64, W(~0ull - 7, 8), CoverMode::kExact).error().code, EINVAL);
  auto top = ComputeCover(Arch::kX86_64, W(~0ull - 15, 8), CoverMode::kExact);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->needed(), 1u);
}

// Every offset 0..15 and length 1..32: exact covers are exact and minimal,
// over-covers use the fewest registers and the fewest extra bytes.
TEST(RegionTest, ExhaustiveAgainstBruteForce) {
  for (Arch arch : {Arch::kX86_64, Arch::kAarch64}) {
    for (uint64_t off = 0; off < 16; ++off) {
      for (uint64_t len = 1; len <= 32; ++len) {
        const Region r = W(0x10000 + off, len);
        SCOPED_TRACE(std::string(ArchName(arch)) + " off " + std::to_string(off) + " len " +
                     std::to_string(len));
        auto exact = ComputeCover(arch, r, CoverMode::kExact);
        ASSERT_TRUE(exact.ok());
        CheckCover(arch, r, *exact, true);
        auto best_exact = Optimum(arch, r.address, r.end(), true);
        EXPECT_EQ(best_exact.second, 0u);
        EXPECT_EQ(exact->needed(), best_exact.first);

        auto over = ComputeCover(arch, r, CoverMode::kOverCover);
        ASSERT_TRUE(over.ok());
        CheckCover(arch, r, *over, false);
        auto best_over = Optimum(arch, r.address, r.end(), false);
        EXPECT_EQ(over->needed(), best_over.first);
        EXPECT_EQ(over->covered_length - r.length, best_over.second);
        EXPECT_LE(over->needed(), exact->needed());
      }
    }
  }
}

}  // namespace
}  // namespace hwwatch::arch
