#include "daemon/request_check.h"

#include <gtest/gtest.h>

#include "daemon/convert.h"
#include "tests/support/requests.h"

namespace hwwatch::daemon {
namespace {

namespace v1 = ::hwwatch::v1;

using testing::OverCover;
using testing::Tid;
using testing::Watch;

// Requests as a client writes them, through the service edge's conversion.
Result<TargetSpec> CheckTarget(const v1::Target& t, unsigned cpus) {
  return daemon::CheckTarget(FromProto(t), cpus);
}
Result<WatchSpec> CheckWatch(const v1::Watch& w, const TargetSpec& t,
                             const arch::HostCapabilities& caps) {
  return daemon::CheckWatch(FromProto(w), t, caps);
}

const arch::HostCapabilities& X86() {
  static const arch::HostCapabilities caps = arch::X86_64Capabilities(4);
  return caps;
}

TEST(CheckTarget, EachKind) {
  auto t = CheckTarget(Tid(42), 4);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->kind, TargetSpec::Kind::kThread);
  EXPECT_EQ(t->tid, 42);
  v1::Target p;
  p.set_pid(7);
  EXPECT_EQ(CheckTarget(p, 4)->kind, TargetSpec::Kind::kProcess);
  v1::Target c;
  c.set_cpu(3);
  EXPECT_EQ(CheckTarget(c, 4)->cpu, 3u);
  EXPECT_FALSE(CheckTarget(c, 4)->is_task());
  v1::Target tc;
  tc.mutable_thread_on_cpu()->set_tid(9);
  tc.mutable_thread_on_cpu()->set_cpu(1);
  auto r = CheckTarget(tc, 4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, TargetSpec::Kind::kThreadOnCpu);
  EXPECT_EQ(r->tid, 9);
  EXPECT_EQ(r->cpu, 1u);
}

TEST(CheckTarget, Refusals) {
  struct Case {
    v1::Target t;
    const char* says;
  };
  v1::Target none, zero_tid = Tid(0), neg_tid = Tid(-5), big_cpu, neg_pid, tc_bad_cpu;
  big_cpu.set_cpu(4);
  neg_pid.set_pid(-1);
  tc_bad_cpu.mutable_thread_on_cpu()->set_tid(1);
  tc_bad_cpu.mutable_thread_on_cpu()->set_cpu(99);
  for (const Case& c : {Case{none, "missing"}, Case{zero_tid, "positive"},
                        Case{neg_tid, "positive"}, Case{big_cpu, "does not exist"},
                        Case{neg_pid, "positive"}, Case{tc_bad_cpu, "does not exist"}}) {
    auto r = CheckTarget(c.t, 4);
    ASSERT_FALSE(r) << c.t.ShortDebugString();
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << r.error().message;
  }
}

TEST(CheckWatch, PlansRegistersAndWeight) {
  TargetSpec task;
  auto w = CheckWatch(Watch(0x1000, 8), task, X86());
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->weight(), 1u);
  // 32 bytes aligned: four 8-byte registers, the whole x86 pool.
  w = CheckWatch(Watch(0x1000, 32), task, X86());
  ASSERT_TRUE(w);
  EXPECT_EQ(w->weight(), 4u);
  // 3 bytes at an odd address: 1 + 2 bytes.
  w = CheckWatch(Watch(0x1001, 3), task, X86());
  ASSERT_TRUE(w);
  EXPECT_EQ(w->weight(), 2u);
}

TEST(CheckWatch, Refusals) {
  TargetSpec task;
  TargetSpec cpu;
  cpu.kind = TargetSpec::Kind::kCpu;
  struct Case {
    v1::Watch w;
    TargetSpec t;
    Code code;
    const char* says;
  };
  const Case cases[] = {
      {Watch(0x1000, 0), task, Code::kInvalidArgument, "at least 1"},
      {Watch(0x1000, 4, v1::ACCESS_UNSPECIFIED), task, Code::kInvalidArgument, "access"},
      {Watch(0x1000, 4, static_cast<v1::Access>(77)), task, Code::kInvalidArgument, "access"},
      {Watch(UINT64_MAX, 2), cpu, Code::kInvalidArgument, "wraps"},
      {Watch(0xffffffff81000000ull, 8), task, Code::kInvalidArgument, "kernel memory"},
      {Watch((uint64_t{1} << 47) - 4, 8), task, Code::kInvalidArgument, "not a user-space"},
      {Watch(0x0000900000000000ull, 8), cpu, Code::kInvalidArgument, "not canonical"},
      {Watch(0x1000, 4, v1::ACCESS_READ), task, Code::kInvalidArgument, ""},  // no read-only on x86
      {Watch(0x1000, 33), task, Code::kResourceExhausted, "5"},               // needs 5 registers
      {Watch(0x1001, 32), task, Code::kResourceExhausted, ""},
      {Watch(0x1000, 2, v1::ACCESS_EXECUTE), task, Code::kInvalidArgument, ""},
  };
  for (const Case& c : cases) {
    auto r = CheckWatch(c.w, c.t, X86());
    ASSERT_FALSE(r) << c.w.ShortDebugString();
    EXPECT_EQ(r.error().code, c.code) << c.w.ShortDebugString() << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << r.error().message;
    EXPECT_FALSE(r.error().message.empty());
  }
}

TEST(CheckWatch, CpuTargetsMayWatchKernelAddresses) {
  TargetSpec cpu;
  cpu.kind = TargetSpec::Kind::kCpu;
  auto w = CheckWatch(Watch(0xffffffff81000000ull, 8), cpu, X86());
  EXPECT_TRUE(w) << w.error().message;
}

TEST(CheckWatch, ACpuWatchOfTheLastBytesMayBeCoveredUpTo2To64) {
  TargetSpec cpu;
  cpu.kind = TargetSpec::Kind::kCpu;
  // The last 30 bytes but one: 8 exact registers, or one 8-byte register
  // per doubleword, the last holding the top byte too (its end is 2^64).
  auto w = CheckWatch(OverCover(Watch(0xffffffffffffffe1ull, 30)), cpu, X86());
  ASSERT_TRUE(w) << w.error().message;
  ASSERT_EQ(w->weight(), 4u);
  EXPECT_EQ(w->cover.registers.back().address, 0xfffffffffffffff8ull);
  EXPECT_EQ(w->cover.registers.back().length, 8u);
  EXPECT_EQ(w->cover.covered_address, 0xffffffffffffffe0ull);
  EXPECT_EQ(w->cover.covered_length, 32u);
}

TEST(CheckWatch, OverCoverOnlyWhenTheExactCoverDoesNotFit) {
  TargetSpec task;
  // 6 bytes at 0x1001 fit exactly in 4 registers: over-cover keeps them exact.
  auto fits = CheckWatch(OverCover(Watch(0x1001, 6)), task, X86());
  ASSERT_TRUE(fits);
  EXPECT_TRUE(fits->cover.exact);
  // 12 bytes at 0x1001 need 5 exact registers: refused, but over-cover
  // takes two 8-byte registers and the daemon filters the extra bytes.
  auto exact = CheckWatch(Watch(0x1001, 12), task, X86());
  ASSERT_FALSE(exact);
  EXPECT_EQ(exact.error().code, Code::kResourceExhausted);
  auto over = CheckWatch(OverCover(Watch(0x1001, 12)), task, X86());
  ASSERT_TRUE(over) << over.error().message;
  EXPECT_EQ(over->weight(), 2u);
  EXPECT_FALSE(over->cover.exact);
}

// Conditions: the grammar, widths and signs the capture program relies on.
TEST(ParseCondition, OperatorsMasksAndSigns) {
  auto c = ParseCondition("value == 3", 4);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->op, Condition::Op::kEq);
  EXPECT_EQ(c->operand, 3u);
  EXPECT_EQ(c->mask, 0xffffffffu) << "the mask is the watch's width";
  EXPECT_FALSE(c->is_signed);

  c = ParseCondition("  (value & 0xF0) >= 0x20 ", 1);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->op, Condition::Op::kGe);
  EXPECT_EQ(c->mask, 0xf0u);
  EXPECT_EQ(c->operand, 0x20u);

  // Two-character operators are not read as their first character.
  EXPECT_EQ(ParseCondition("value <= 1", 8)->op, Condition::Op::kLe);
  EXPECT_EQ(ParseCondition("value != 1", 8)->op, Condition::Op::kNe);
  EXPECT_EQ(ParseCondition("value < 1", 8)->op, Condition::Op::kLt);
  EXPECT_EQ(ParseCondition("value > 1", 8)->op, Condition::Op::kGt);

  // Negative: signed, sign-extended to 64 bits as the program compares.
  c = ParseCondition("value < -2", 2);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->is_signed);
  EXPECT_EQ(c->operand, ~uint64_t{1});
  c = ParseCondition("value == -128", 1);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->operand, ~uint64_t{0x7f});
  c = ParseCondition("value == 18446744073709551615", 8);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->operand, ~uint64_t{0});
}

TEST(ParseCondition, RefusesWhatDoesNotFitOrParse) {
  auto why = [](const char* text, uint64_t length) {
    auto c = ParseCondition(text, length);
    EXPECT_FALSE(c) << text;
    if (c) return std::string();
    EXPECT_EQ(c.error().code, Code::kInvalidArgument) << text;
    return c.error().message;
  };
  EXPECT_NE(why("value == 1", 16).find("1 to 8 bytes"), std::string::npos);
  EXPECT_NE(why("value == 256", 1).find("does not fit"), std::string::npos);
  EXPECT_NE(why("value == -129", 1).find("does not fit in a signed 1-byte"), std::string::npos);
  EXPECT_NE(why("value == 18446744073709551616", 8).find("expected a number"), std::string::npos);
  EXPECT_NE(why("value & 0x100 == 0", 1).find("beyond the watch's 1 byte"), std::string::npos);
  EXPECT_NE(why("value && 1 == 0", 4).find("'&&'"), std::string::npos);
  EXPECT_NE(why("(value & 1 == 0", 4).find("expected ')'"), std::string::npos);
  EXPECT_NE(why("value = 1", 4).find("expected one of"), std::string::npos);
  EXPECT_NE(why("x == 1", 4).find("expected 'value'"), std::string::npos);
  EXPECT_NE(why("value == 0x", 4).find("expected a number"), std::string::npos);
  EXPECT_NE(why("value == 1 2", 4).find("unexpected"), std::string::npos);
}

TEST(CheckWatch, FiltersAreCheckedWithTheWatch) {
  const TargetSpec thread{TargetSpec::Kind::kThread, 42, 0};
  v1::Watch w = Watch(0x1000, 4);
  w.set_condition("value > 7");
  auto s = CheckWatch(w, thread, X86());
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(s->condition.has_value());
  EXPECT_EQ(s->condition->operand, 7u);
  EXPECT_TRUE(s->filtered());
  w.set_condition("value >");
  EXPECT_EQ(CheckWatch(w, thread, X86()).error().code, Code::kInvalidArgument);
  v1::Watch x = Watch(0x1000, 1, v1::ACCESS_EXECUTE);
  x.set_changed(true);
  EXPECT_NE(CheckWatch(x, thread, X86()).error().message.find("not execute"), std::string::npos);
}

}  // namespace
}  // namespace hwwatch::daemon
