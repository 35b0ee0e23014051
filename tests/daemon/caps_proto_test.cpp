#include <gtest/gtest.h>

#include "daemon/service.h"

namespace hwwatch::daemon {
namespace {

TEST(CapabilitiesToProto, X86HasOneMixedPoolOfFour) {
  auto caps = CapabilitiesToProto(arch::X86_64Capabilities(8));
  EXPECT_EQ(caps.arch(), v1::ARCH_X86_64);
  EXPECT_EQ(caps.cpus(), 8u);
  ASSERT_EQ(caps.pools_size(), 1);
  EXPECT_TRUE(caps.pools(0).mixed());
  EXPECT_EQ(caps.pools(0).slots(), 4u);
  EXPECT_EQ(caps.pools(0).types_size(), 2);
  ASSERT_EQ(caps.access_rules_size(), 3);
  EXPECT_EQ(caps.max_watch_length(), 4u * 8u);
}

TEST(CapabilitiesToProto, SeparatePoolsAndWordRules) {
  arch::HostCapabilities h;
  h.arch = arch::Arch::kAarch64;
  h.cpus = 2;
  h.debug_arch = 9;
  h.pools = {arch::SlotPool{{arch::SlotType::kInst}, 6},
             arch::SlotPool{{arch::SlotType::kData}, 4}};
  h.rules = {arch::AccessRule{arch::Access::kRead, {1, 2, 3, 4, 5, 6, 7, 8}, false, 8},
             arch::AccessRule{arch::Access::kExecute, {4}, true, 0}};
  auto caps = CapabilitiesToProto(h);
  EXPECT_EQ(caps.arch(), v1::ARCH_AARCH64);
  EXPECT_EQ(caps.debug_arch(), 9u);
  ASSERT_EQ(caps.pools_size(), 2);
  EXPECT_FALSE(caps.pools(0).mixed());
  EXPECT_EQ(caps.pools(0).types(0), v1::SLOT_TYPE_INST);
  EXPECT_EQ(caps.pools(1).types(0), v1::SLOT_TYPE_DATA);
  EXPECT_EQ(caps.access_rules(0).word_size(), 8u);
  // Execute breakpoints do not count towards the largest data watch; the
  // largest pool (6) times the widest data register (8).
  EXPECT_EQ(caps.max_watch_length(), 48u);
}

}  // namespace
}  // namespace hwwatch::daemon
