// x86 DR7/DR6 and arm64 DBGWCR/DBGBCR/dbg_info encodings (pure).
#include <gtest/gtest.h>

#include "arch/arm64_debugreg.h"
#include "arch/x86_debugreg.h"

namespace hwwatch::arch {
namespace {

using x86::Condition;
using x86::Dr7Slot;

TEST(X86Dr7Test, LenEncodingIncludesEightBytesAsTen) {
  EXPECT_EQ(x86::EncodeLen(1), 0b00);
  EXPECT_EQ(x86::EncodeLen(2), 0b01);
  EXPECT_EQ(x86::EncodeLen(4), 0b11);
  EXPECT_EQ(x86::EncodeLen(8), 0b10);
  EXPECT_FALSE(x86::EncodeLen(3).has_value());
  EXPECT_FALSE(x86::EncodeLen(16).has_value());
  for (unsigned len : {1u, 2u, 4u, 8u}) EXPECT_EQ(x86::DecodeLen(*x86::EncodeLen(len)), len);
}

struct Dr7Case {
  unsigned slot;
  Dr7Slot s;
  uint64_t dr7;
};

TEST(X86Dr7Test, EncodesTable) {
  const Dr7Case cases[] = {
      {0, {true, false, Condition::kWrite, 4}, 0x000d0001},      // GDB's 4-byte write watch
      {0, {true, false, Condition::kWrite, 1}, 0x00010001},      //
      {1, {true, false, Condition::kReadWrite, 8}, 0x00b00004},  // LEN=10 RW=11 at bit 20
      {2, {false, true, Condition::kWrite, 2}, 0x05000020},      // G2 at bit 5
      {3, {true, false, Condition::kExecute, 1}, 0x00000040},    // execute: RW=00 LEN=00
      {3, {true, true, Condition::kReadWrite, 4}, 0xf00000c0},
  };
  for (const Dr7Case& c : cases) {
    SCOPED_TRACE(c.slot);
    auto v = x86::Dr7WithSlot(0, c.slot, c.s);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, c.dr7);
    EXPECT_EQ(x86::Dr7GetSlot(c.dr7, c.slot), c.s);
    EXPECT_TRUE(x86::Dr7GetSlot(c.dr7, c.slot).enabled());
  }
}

TEST(X86Dr7Test, SlotsAreIndependent) {
  uint64_t dr7 = 0;
  for (unsigned i = 0; i < 4; ++i) {
    dr7 = *x86::Dr7WithSlot(dr7, i, {true, false, Condition::kWrite, 1u << i});
  }
  for (unsigned i = 0; i < 4; ++i) {
    Dr7Slot s = x86::Dr7GetSlot(dr7, i);
    EXPECT_TRUE(s.local);
    EXPECT_EQ(s.length, 1u << i);
  }
  uint64_t without1 = x86::Dr7WithoutSlot(dr7, 1);
  EXPECT_FALSE(x86::Dr7GetSlot(without1, 1).enabled());
  EXPECT_EQ(without1 & x86::Dr7SlotMask(1), 0u);
  for (unsigned i : {0u, 2u, 3u}) EXPECT_EQ(x86::Dr7GetSlot(without1, i), x86::Dr7GetSlot(dr7, i));
  // Bits outside the slots (LE/GE, GD) survive slot edits.
  uint64_t with_le = x86::kDr7LocalExact | x86::kDr7GeneralDetect;
  EXPECT_EQ(*x86::Dr7WithSlot(with_le, 0, {true, false, Condition::kWrite, 8}) & with_le, with_le);
}

TEST(X86Dr7Test, RefusesWhatHardwareCannotExpress) {
  EXPECT_FALSE(x86::Dr7WithSlot(0, 4, {true, false, Condition::kWrite, 4}).has_value());
  EXPECT_FALSE(x86::Dr7WithSlot(0, 0, {true, false, Condition::kWrite, 3}).has_value());
  EXPECT_FALSE(x86::Dr7SlotFor(Access::kRead, 4).has_value());
  // Execute ignores the requested length: the hardware wants LEN=00.
  auto x = x86::Dr7SlotFor(Access::kExecute, 8);
  ASSERT_TRUE(x.has_value());
  EXPECT_EQ(x->length, 1u);
  EXPECT_EQ(*x86::Dr7WithSlot(0, 0, *x), 0x1u);
  auto w = x86::Dr7SlotFor(Access::kReadWrite, 2);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->condition, Condition::kReadWrite);
}

TEST(X86Dr6Test, Decodes) {
  // Seen in the x86_64 VM after a ptrace write watch on slot 0 fired.
  x86::Dr6Status s = x86::DecodeDr6(0xffff0ff1);
  EXPECT_EQ(s.hits, 1);
  EXPECT_TRUE(s.Hit(0));
  EXPECT_FALSE(s.Hit(1));
  EXPECT_EQ(s.FirstHit(), 0u);
  EXPECT_FALSE(s.single_step);
  EXPECT_FALSE(s.debug_access);
  EXPECT_FALSE(s.task_switch);
  EXPECT_FALSE(s.bus_lock);
  EXPECT_FALSE(s.rtm);

  s = x86::DecodeDr6(0xffff4ffc);
  EXPECT_EQ(s.hits, 0b1100);
  EXPECT_EQ(s.FirstHit(), 2u);
  EXPECT_TRUE(s.single_step);

  s = x86::DecodeDr6(0x0000a000);  // BD and BT, BLD and RTM active (low)
  EXPECT_EQ(s.hits, 0);
  EXPECT_FALSE(s.FirstHit().has_value());
  EXPECT_TRUE(s.debug_access);
  EXPECT_TRUE(s.task_switch);
  EXPECT_TRUE(s.bus_lock);
  EXPECT_TRUE(s.rtm);
}

TEST(Arm64WcrTest, EncodesFieldsAtTheirBits) {
  using arm64::LoadStore;
  using arm64::Privilege;
  // 8-byte store watch at EL0: BAS 0xff, LSC 2, PAC 2, E.
  EXPECT_EQ(arm64::EncodeWcr({true, Privilege::kEl0, LoadStore::kStore, 0xff, 0}), 0x1ff5u);
  // 4-byte load watch on the upper half of the doubleword.
  EXPECT_EQ(arm64::EncodeWcr({true, Privilege::kEl0, LoadStore::kLoad, 0xf0, 0}), 0x1e0du);
  EXPECT_EQ(arm64::EncodeWcr({false, Privilege::kEl1, LoadStore::kBoth, 0x01, 0}), 0x3au);
  EXPECT_EQ(arm64::EncodeWcr({true, Privilege::kAll, LoadStore::kBoth, 0, 31}), 0x1f00001fu);
  const arm64::Wcr all[] = {
      {true, Privilege::kEl0, LoadStore::kStore, 0xff, 0},
      {true, Privilege::kAll, LoadStore::kLoad, 0x18, 3},
      {false, Privilege::kEl1, LoadStore::kBoth, 0x80, 31},
  };
  for (const arm64::Wcr& w : all) EXPECT_EQ(arm64::DecodeWcr(arm64::EncodeWcr(w)), w);
  EXPECT_EQ(arm64::DecodeWcr(0x1ff5u).bas, 0xff);
  EXPECT_EQ(arm64::DecodeWcr(0x1ff5u).load_store, LoadStore::kStore);
}

TEST(Arm64BcrTest, EncodesInstructionBreakpoint) {
  EXPECT_EQ(arm64::EncodeBcr({true, arm64::Privilege::kEl0, 0xf}), 0x1e5u);
  EXPECT_EQ(arm64::DecodeBcr(0x1e5u), (arm64::Bcr{true, arm64::Privilege::kEl0, 0xf}));
  EXPECT_FALSE(arm64::DecodeBcr(0x1e4u).enabled);
  auto b = arm64::EncodeBreak(0x400000);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->address, 0x400000u);
  EXPECT_EQ(b->control, 0x1e5u);
  EXPECT_FALSE(arm64::EncodeBreak(0x400002).has_value());
}

TEST(Arm64BasTest, ContiguousRunsInsideTheDoubleword) {
  EXPECT_EQ(arm64::BasFor(0, 8), 0xff);
  EXPECT_EQ(arm64::BasFor(0, 1), 0x01);
  EXPECT_EQ(arm64::BasFor(3, 2), 0x18);
  EXPECT_EQ(arm64::BasFor(7, 1), 0x80);
  EXPECT_FALSE(arm64::BasFor(7, 2).has_value());
  EXPECT_FALSE(arm64::BasFor(0, 0).has_value());
  EXPECT_FALSE(arm64::BasFor(8, 1).has_value());
  for (unsigned off = 0; off < 8; ++off) {
    for (unsigned len = 1; off + len <= 8; ++len) {
      auto bas = arm64::BasFor(off, len);
      ASSERT_TRUE(bas.has_value());
      EXPECT_EQ(arm64::BasRange(*bas), (arm64::ByteRange{off, len}));
    }
  }
  EXPECT_FALSE(arm64::BasRange(0).has_value());
  EXPECT_FALSE(arm64::BasRange(0b101).has_value());  // not contiguous
}

TEST(Arm64BasTest, EncodeWatchAlignsAddressAndShiftsBas) {
  auto w = arm64::EncodeWatch(0x1003, 4, Access::kWrite);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->address, 0x1000u);
  arm64::Wcr d = arm64::DecodeWcr(w->control);
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.bas, 0x78);
  EXPECT_EQ(d.load_store, arm64::LoadStore::kStore);
  EXPECT_EQ(d.privilege, arm64::Privilege::kEl0);
  EXPECT_FALSE(arm64::EncodeWatch(0x1005, 4, Access::kWrite).has_value());  // crosses
  EXPECT_FALSE(arm64::EncodeWatch(0x1000, 4, Access::kExecute).has_value());
  EXPECT_EQ(arm64::DecodeWcr(arm64::EncodeWatch(0x1000, 8, Access::kRead)->control).load_store,
            arm64::LoadStore::kLoad);
}

TEST(Arm64DbgInfoTest, Parses) {
  // Seen in the aarch64 VM: debug architecture 9 (ARMv8.4), 4 watchpoints.
  EXPECT_EQ(arm64::ParseDbgInfo(0x904), (arm64::DbgInfo{9, 4}));
  EXPECT_EQ(arm64::ParseDbgInfo(0x610), (arm64::DbgInfo{6, 16}));
  EXPECT_EQ(arm64::ParseDbgInfo(0xffff0806), (arm64::DbgInfo{8, 6}));  // upper bits ignored
}

}  // namespace
}  // namespace hwwatch::arch
