// Modify through the real daemon, checked against the kernel: the new watch
// is admitted as if the old were released, registers move in place or are
// added and removed, and a refused modify leaves the old watch armed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::KernelFreeOnThread;
using testing::Request;
using testing::Sleeper;
using testing::Watch;

namespace v1 = ::hwwatch::v1;

class Modify : public testing::DaemonTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonTest::SetUp());
    baseline_ = KernelFreeOnThread(target_.pid());
    ASSERT_EQ(baseline_, 4u) << "something outside this test holds debug registers";
  }
  Sleeper target_;
  unsigned baseline_ = 0;
};

TEST_F(Modify, GrowsAndShrinksTheRegistersInTheKernel) {
  auto r = client().Reserve(Request().Tid(target_.pid()).At(0x10000, 8));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
  auto wide = client().Modify(r->id(), Watch(0x20000, 32));
  ASSERT_TRUE(wide) << wide.error().ToString();
  EXPECT_EQ(wide->id(), r->id());
  EXPECT_EQ(wide->weight(), 4u);
  EXPECT_EQ(wide->registers_size(), 4);
  EXPECT_EQ(wide->watch().address(), 0x20000u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
  auto narrow = client().Modify(r->id(), Watch(0x30000, 2));
  ASSERT_TRUE(narrow) << narrow.error().ToString();
  EXPECT_EQ(narrow->weight(), 1u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
  auto l = client().List();
  ASSERT_TRUE(l);
  ASSERT_EQ(l->reservations_size(), 1);
  EXPECT_EQ(l->reservations(0).watch().address(), 0x30000u);
  ASSERT_TRUE(client().Release(r->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 4u);
}

TEST_F(Modify, IsAdmittedAsIfTheOldWatchWereReleased) {
  auto a = client().Reserve(Request().Tid(target_.pid()).At(0x10000, 8));
  auto b = client().Reserve(Request().Tid(target_.pid()).At(0x20000, 24));  // 3 registers
  ASSERT_TRUE(a && b);
  // Full (4 of 4), yet moving a's one register elsewhere fits.
  auto moved = client().Modify(a->id(), Watch(0x40000, 8));
  ASSERT_TRUE(moved) << moved.error().ToString();
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
}

TEST_F(Modify, ARefusedModifyLeavesTheOldWatchArmed) {
  auto a = client().Reserve(Request().Tid(target_.pid()).At(0x10000, 8));
  auto b = client().Reserve(Request().Tid(target_.pid()).At(0x20000, 24));
  ASSERT_TRUE(a && b);
  auto grow = client().Modify(a->id(), Watch(0x10000, 16));  // 3 + 2 > 4
  ASSERT_FALSE(grow);
  EXPECT_EQ(grow.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(grow.error().refusal.has_value());
  EXPECT_EQ(grow.error().refusal->reason(), v1::Refusal::TASK_FULL);
  EXPECT_EQ(grow.error().refusal->weight(), 2u);
  EXPECT_EQ(grow.error().refusal->task_pinned(), 3u) << "counted without the old watch";
  auto kernel = client().Modify(a->id(), Watch(0xffffffff81000000, 8));  // not a user address
  ASSERT_FALSE(kernel);
  EXPECT_EQ(kernel.error().code, grpc::StatusCode::INVALID_ARGUMENT);
  // Still the old watch, still armed.
  auto l = client().List();
  ASSERT_TRUE(l);
  for (const auto& r : l->reservations()) {
    if (r.id() == a->id()) {
      EXPECT_EQ(r.watch().address(), 0x10000u);
    }
  }
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
  ASSERT_TRUE(client().Release(b->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
}

}  // namespace
}  // namespace hwwatch

namespace hwwatch {
namespace {

// Sharing: the same watch on the same target from two sessions takes the
// registers once; each session keeps its own reservation.
TEST_F(Modify, TheSameWatchFromTwoSessionsSharesItsRegisters) {
  auto other = Connect();
  ASSERT_TRUE(other);
  auto a = client().Reserve(Request().Tid(target_.pid()).At(0x10000, 16));  // 2 registers
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = other->Reserve(Request().Tid(target_.pid()).At(0x10000, 16));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(b->sharers(), 2u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u) << "armed once for both";
  auto l = client().List();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reservations_size(), 2);  // both are this uid's
  for (const auto& r : l->reservations()) EXPECT_EQ(r.sharers(), 2u);
  // A shared watch cannot be moved under the other session's feet.
  auto moved = client().Modify(a->id(), Watch(0x30000, 8));
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, grpc::StatusCode::FAILED_PRECONDITION);
  // The registers stay until the last sharer goes.
  ASSERT_TRUE(client().Release(a->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u);
  auto alone = other->List();
  ASSERT_TRUE(alone);
  ASSERT_EQ(alone->reservations_size(), 1);
  EXPECT_EQ(alone->reservations(0).sharers(), 1u);
  ASSERT_TRUE(other->Release(b->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 4u);
  // A different watch is not shared.
  auto c1 = client().Reserve(Request().Tid(target_.pid()).At(0x10000, 8));
  auto c2 = other->Reserve(Request().Tid(target_.pid()).At(0x10008, 8));
  ASSERT_TRUE(c1 && c2);
  EXPECT_EQ(c2->sharers(), 1u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u);
}

}  // namespace
}  // namespace hwwatch
