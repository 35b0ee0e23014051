// Modify's rollback, through the real ReservationManager and engine with a
// test double for the backend (no kernel, no root): a backend that cannot
// move the registers leaves the old watch armed and accounted, an engine
// refusal never reaches the backend, and a move that works is committed.
#include <gtest/gtest.h>
#include <unistd.h>

#include "daemon/accounting.h"
#include "daemon/reservations.h"

namespace hwwatch::daemon {
namespace {

// Accounts in the engine like the perf backends and records what it was
// asked; Move fails while `fail_moves` is set.
class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(engine::Engine& engine) : engine_(engine) {}
  Result<ThreadArm> Admit(const TargetSpec& where, arch::SlotType type, unsigned weight,
                          const ArmHow&) override {
    auto id = daemon::Admit(engine_, where, type, weight);
    if (!id) return std::move(id).error();
    ThreadArm arm;
    arm.tid = where.is_task() ? where.tid : -1;
    arm.engine_id = *id;
    return arm;
  }
  std::optional<Problem> Arm(ThreadArm& arm, const TargetSpec&, const ArmSpec& spec) override {
    arm.slots.assign(spec.watch->weight(), 0);  // stands for the registers armed
    ++armed;
    return std::nullopt;
  }
  void Disarm(ThreadArm& arm) override {
    if (arm.engine_id != 0) engine_.Release(arm.engine_id);
    arm.engine_id = 0;
    arm.slots.clear();
  }
  std::optional<Problem> Move(std::vector<ThreadArm>& arms, const TargetSpec&, const WatchSpec&,
                              const ArmSpec& to) override {
    ++moves;
    if (fail_moves) return MakeProblem(Code::kInternal, "the fake could not move the registers");
    for (ThreadArm& arm : arms) arm.slots.assign(to.watch->weight(), 0);
    return std::nullopt;
  }
  uint64_t Hits(const ThreadArm& arm) const override { return arm.slots.size(); }

  bool fail_moves = false;
  int armed = 0, moves = 0;

 private:
  engine::Engine& engine_;
};

class ModifyRollback : public ::testing::Test {
 protected:
  ModifyRollback()
      : manager_(arch::X86_64Capabilities(2), engine::LockMode::kSharded, ReservationLimits{},
                 CaptureOptions{false}, "", [this](Backends& b, engine::Engine& e) {
                   auto fake = std::make_unique<FakeBackend>(e);
                   fake_ = fake.get();
                   b.events = std::move(fake);
                 }) {
    root_.session_id = 1;
    root_.creds = {0, 0, getpid()};
  }
  // A counting watch of `length` bytes at 0x1000 on cpu 0 (the events backend).
  ReserveArgs OnCpu0(uint64_t address, uint64_t length) {
    ReserveArgs r;
    r.target = {TargetSpec::Kind::kCpu, 0, 0};
    r.watch = {address, length, arch::Access::kWrite, false, "", false, ""};
    r.delivery = Delivery::kCount;
    return r;
  }
  unsigned CpuPinned() { return manager_.Slots({}).cpus.at(0).cpu_pinned; }

  FakeBackend* fake_ = nullptr;
  ReservationManager manager_;
  Peer root_;
};

TEST_F(ModifyRollback, AFailedMoveLeavesTheOldWatchArmedAndAccounted) {
  auto r = manager_.Reserve(root_, OnCpu0(0x1000, 8));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(fake_->armed, 1);
  EXPECT_EQ(CpuPinned(), 1u);
  fake_->fail_moves = true;
  auto m = manager_.Modify(root_, r->id, {0x1000, 32, arch::Access::kWrite, false, "", false, ""});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::kInternal);
  EXPECT_EQ(fake_->moves, 1);
  // The engine is back on one register, and the reservation is unchanged.
  EXPECT_EQ(CpuPinned(), 1u);
  auto listed = manager_.List(root_, false);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].watch.length, 8u);
  EXPECT_EQ(listed[0].weight, 1u);
  EXPECT_EQ(listed[0].registers.size(), 1u);
  EXPECT_EQ(listed[0].hits, 1u);  // the fake's one register, untouched
}

TEST_F(ModifyRollback, AnEngineRefusalNeverReachesTheBackend) {
  auto a = manager_.Reserve(root_, OnCpu0(0x1000, 8));
  auto b = manager_.Reserve(root_, OnCpu0(0x2000, 16));  // 2 registers
  ASSERT_TRUE(a && b);
  EXPECT_EQ(CpuPinned(), 3u);
  // 2 + 3 registers do not fit in cpu 0's 4, even with a's one given back.
  auto m = manager_.Modify(root_, a->id, {0x1000, 24, arch::Access::kWrite, false, "", false, ""});
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Code::kResourceExhausted);
  ASSERT_TRUE(m.error().refusal.has_value());
  EXPECT_EQ(m.error().refusal->reason, Refusal::Reason::kCpuFull);
  EXPECT_EQ(fake_->moves, 0);
  EXPECT_EQ(CpuPinned(), 3u);
  // As if the old one were released: 2 + 2 fit.
  auto ok = manager_.Modify(root_, a->id, {0x1000, 16, arch::Access::kWrite, false, "", false, ""});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(CpuPinned(), 4u);
}

TEST_F(ModifyRollback, AMoveThatWorksIsCommitted) {
  auto r = manager_.Reserve(root_, OnCpu0(0x1000, 8));
  ASSERT_TRUE(r);
  auto m = manager_.Modify(root_, r->id, {0x3000, 16, arch::Access::kWrite, false, "x", false, ""});
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->weight, 2u);
  EXPECT_EQ(m->watch.address, 0x3000u);
  EXPECT_EQ(m->watch.symbol, "x");
  EXPECT_EQ(CpuPinned(), 2u);
  ASSERT_FALSE(manager_.Release(root_, r->id).has_value());
  EXPECT_EQ(CpuPinned(), 0u);
  EXPECT_TRUE(manager_.List(root_, true).empty());
}

}  // namespace
}  // namespace hwwatch::daemon
