// Capability facts: the x86 constants, the arm64 mapping from dbg_info, the
// CPU-list parser, and discovery on this host.
#include "arch/capabilities.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>

namespace hwwatch::arch {
namespace {

const AccessRule* RuleFor(const HostCapabilities& c, Access a) {
  auto it = std::find_if(c.rules.begin(), c.rules.end(),
                         [a](const AccessRule& r) { return r.access == a; });
  return it == c.rules.end() ? nullptr : &*it;
}

TEST(CapabilitiesTest, X86MixedPoolOfFour) {
  HostCapabilities c = X86_64Capabilities(8);
  EXPECT_EQ(c.arch, Arch::kX86_64);
  EXPECT_EQ(c.cpus, 8u);
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_TRUE(c.pools[0].mixed());
  EXPECT_EQ(c.pools[0].slots, 4u);
  EXPECT_EQ(c.PoolFor(SlotType::kData), c.PoolFor(SlotType::kInst));
  EXPECT_EQ(RuleFor(c, Access::kRead), nullptr);
  ASSERT_NE(RuleFor(c, Access::kWrite), nullptr);
  EXPECT_TRUE(RuleFor(c, Access::kWrite)->naturally_aligned);
}

TEST(CapabilitiesTest, Aarch64SeparatePoolsFromDbgInfo) {
  // As seen in the aarch64 VM: 0x904 watchpoints; breakpoints 0x906.
  HostCapabilities c = Aarch64Capabilities(2, 0x904, 0x906);
  EXPECT_EQ(c.arch, Arch::kAarch64);
  EXPECT_EQ(c.debug_arch, 9u);
  EXPECT_TRUE(c.error.empty());
  ASSERT_EQ(c.pools.size(), 2u);
  const SlotPool* data = c.PoolFor(SlotType::kData);
  const SlotPool* inst = c.PoolFor(SlotType::kInst);
  ASSERT_NE(data, nullptr);
  ASSERT_NE(inst, nullptr);
  EXPECT_NE(data, inst);
  EXPECT_FALSE(data->mixed());
  EXPECT_EQ(data->slots, 4u);
  EXPECT_EQ(inst->slots, 6u);
  const AccessRule* read = RuleFor(c, Access::kRead);
  ASSERT_NE(read, nullptr);  // arm64 has read-only watchpoints
  EXPECT_EQ(read->word_size, 8u);
  EXPECT_FALSE(read->naturally_aligned);
  EXPECT_EQ(read->lengths.size(), 8u);
  const AccessRule* exec = RuleFor(c, Access::kExecute);
  ASSERT_NE(exec, nullptr);
  EXPECT_EQ(exec->lengths, std::vector<unsigned>{4});

  HostCapabilities none = Aarch64Capabilities(2, 0x600, 0x600);
  EXPECT_TRUE(none.pools.empty());
  EXPECT_FALSE(none.error.empty());
}

TEST(CapabilitiesTest, ParsesCpuLists) {
  EXPECT_EQ(ParseCpuListCount("0-1\n"), 2u);
  EXPECT_EQ(ParseCpuListCount("0-3,8,10-11"), 12u);
  EXPECT_EQ(ParseCpuListCount("0"), 1u);
  EXPECT_EQ(ParseCpuListCount(""), 0u);
  EXPECT_EQ(ParseCpuListCount("3-1"), 0u);
  EXPECT_EQ(ParseCpuListCount("x"), 0u);
}

TEST(CapabilitiesTest, DiscoversThisHost) {
  HostCapabilities c = DiscoverHost();
  EXPECT_EQ(c.arch, kHostArch);
  EXPECT_TRUE(c.error.empty()) << c.error;
  EXPECT_GE(c.cpus, 1u);
  EXPECT_FALSE(c.kernel_release.empty());
  ASSERT_NE(c.PoolFor(SlotType::kData), nullptr);
  EXPECT_GE(c.PoolFor(SlotType::kData)->slots, 1u);
  if constexpr (kHostArch == Arch::kX86_64) {
    auto probe = ProbeArm64DbgInfo();
    ASSERT_FALSE(probe.ok());
    EXPECT_EQ(probe.error().code, EOPNOTSUPP);
  } else if constexpr (kHostArch == Arch::kAarch64) {
    auto probe = ProbeArm64DbgInfo();
    ASSERT_TRUE(probe.ok()) << probe.error().message;
    EXPECT_EQ(c.PoolFor(SlotType::kData)->slots, probe->watch & 0xff);
  }
}

}  // namespace
}  // namespace hwwatch::arch
