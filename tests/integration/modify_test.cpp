// Modify through the real daemon, checked against the kernel: the new watch
// is admitted as if the old were released, registers move in place or are
// added and removed, and a refused modify leaves the old watch armed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/support/process.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::KernelFreeOnThread;
using testing::Sleeper;

using client::Client;
namespace v1 = ::hwwatch::v1;

v1::Watch W(uint64_t address, uint64_t length) {
  v1::Watch w;
  w.set_address(address);
  w.set_length(length);
  w.set_access(v1::ACCESS_WRITE);
  return w;
}

v1::ReserveRequest On(pid_t tid, const v1::Watch& w) {
  v1::ReserveRequest r;
  r.mutable_target()->set_tid(tid);
  *r.mutable_watch() = w;
  return r;
}

class Modify : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(d_.running()) << d_.Log();
    auto c = Client::Connect(d_.socket());
    ASSERT_TRUE(c) << c.error().ToString();
    c_ = std::move(c.value());
    baseline_ = KernelFreeOnThread(target_.pid());
    ASSERT_EQ(baseline_, 4u) << "something outside this test holds debug registers";
  }
  testing::DaemonProcess d_;
  Sleeper target_;
  std::unique_ptr<Client> c_;
  unsigned baseline_ = 0;
};

TEST_F(Modify, GrowsAndShrinksTheRegistersInTheKernel) {
  auto r = c_->Reserve(On(target_.pid(), W(0x10000, 8)));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
  auto wide = c_->Modify(r->id(), W(0x20000, 32));
  ASSERT_TRUE(wide) << wide.error().ToString();
  EXPECT_EQ(wide->id(), r->id());
  EXPECT_EQ(wide->weight(), 4u);
  EXPECT_EQ(wide->registers_size(), 4);
  EXPECT_EQ(wide->watch().address(), 0x20000u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
  auto narrow = c_->Modify(r->id(), W(0x30000, 2));
  ASSERT_TRUE(narrow) << narrow.error().ToString();
  EXPECT_EQ(narrow->weight(), 1u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
  auto l = c_->List();
  ASSERT_TRUE(l);
  ASSERT_EQ(l->reservations_size(), 1);
  EXPECT_EQ(l->reservations(0).watch().address(), 0x30000u);
  ASSERT_TRUE(c_->Release(r->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 4u);
}

TEST_F(Modify, IsAdmittedAsIfTheOldWatchWereReleased) {
  auto a = c_->Reserve(On(target_.pid(), W(0x10000, 8)));
  auto b = c_->Reserve(On(target_.pid(), W(0x20000, 24)));  // 3 registers
  ASSERT_TRUE(a && b);
  // Full (4 of 4), yet moving a's one register elsewhere fits.
  auto moved = c_->Modify(a->id(), W(0x40000, 8));
  ASSERT_TRUE(moved) << moved.error().ToString();
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
}

TEST_F(Modify, ARefusedModifyLeavesTheOldWatchArmed) {
  auto a = c_->Reserve(On(target_.pid(), W(0x10000, 8)));
  auto b = c_->Reserve(On(target_.pid(), W(0x20000, 24)));
  ASSERT_TRUE(a && b);
  auto grow = c_->Modify(a->id(), W(0x10000, 16));  // 3 + 2 > 4
  ASSERT_FALSE(grow);
  EXPECT_EQ(grow.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(grow.error().refusal.has_value());
  EXPECT_EQ(grow.error().refusal->reason(), v1::Refusal::TASK_FULL);
  EXPECT_EQ(grow.error().refusal->weight(), 2u);
  EXPECT_EQ(grow.error().refusal->task_pinned(), 3u) << "counted without the old watch";
  auto kernel = c_->Modify(a->id(), W(0xffffffff81000000, 8));  // not a user address
  ASSERT_FALSE(kernel);
  EXPECT_EQ(kernel.error().code, grpc::StatusCode::INVALID_ARGUMENT);
  // Still the old watch, still armed.
  auto l = c_->List();
  ASSERT_TRUE(l);
  for (const auto& r : l->reservations()) {
    if (r.id() == a->id()) {
      EXPECT_EQ(r.watch().address(), 0x10000u);
    }
  }
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 0u);
  ASSERT_TRUE(c_->Release(b->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 3u);
}

}  // namespace
}  // namespace hwwatch

namespace hwwatch {
namespace {

// Sharing: the same watch on the same target from two sessions takes the
// registers once; each session keeps its own reservation.
TEST_F(Modify, TheSameWatchFromTwoSessionsSharesItsRegisters) {
  auto other = Client::Connect(d_.socket());
  ASSERT_TRUE(other);
  auto a = c_->Reserve(On(target_.pid(), W(0x10000, 16)));  // 2 registers
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = other.value()->Reserve(On(target_.pid(), W(0x10000, 16)));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(b->sharers(), 2u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u) << "armed once for both";
  auto l = c_->List();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reservations_size(), 2);  // both are this uid's
  for (const auto& r : l->reservations()) EXPECT_EQ(r.sharers(), 2u);
  // A shared watch cannot be moved under the other session's feet.
  auto moved = c_->Modify(a->id(), W(0x30000, 8));
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, grpc::StatusCode::FAILED_PRECONDITION);
  // The registers stay until the last sharer goes.
  ASSERT_TRUE(c_->Release(a->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u);
  auto alone = other.value()->List();
  ASSERT_TRUE(alone);
  ASSERT_EQ(alone->reservations_size(), 1);
  EXPECT_EQ(alone->reservations(0).sharers(), 1u);
  ASSERT_TRUE(other.value()->Release(b->id()));
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 4u);
  // A different watch is not shared.
  auto c1 = c_->Reserve(On(target_.pid(), W(0x10000, 8)));
  auto c2 = other.value()->Reserve(On(target_.pid(), W(0x10008, 8)));
  ASSERT_TRUE(c1 && c2);
  EXPECT_EQ(c2->sharers(), 1u);
  EXPECT_EQ(KernelFreeOnThread(target_.pid()), 2u);
}

}  // namespace
}  // namespace hwwatch
