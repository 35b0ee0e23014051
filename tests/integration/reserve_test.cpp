// Reservations through the real daemon on a real socket, armed in the real
// kernel: refusals with their reasons, slots given back when a client dies,
// who may watch what, and bad requests.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <thread>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/support/cli.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/process.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::KernelFreeOnCpu;
using testing::Request;
using testing::Sleeper;
using testing::Watch;

using client::Client;
namespace v1 = ::hwwatch::v1;

// A daemon, a thread to watch, a client: in that order (the thread is
// forked before the client's threads start).
class WithTarget : public testing::DaemonTest {
 protected:
  Sleeper target;
};
using Reserve = WithTarget;
using BadRequests = WithTarget;
using CliSlots = WithTarget;

std::unique_ptr<Client> Connect(const testing::DaemonProcess& d) {
  auto c = Client::Connect(d.socket());
  EXPECT_TRUE(c) << c.error().ToString();
  return c ? std::move(c.value()) : nullptr;
}

TEST_F(Reserve, UntilFullThenTheReasonNamesTaskCpuAndCounts) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto r = client().Reserve(Request().Tid(target.pid()).At(0x10000 + 8 * i, 8));
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->weight(), 1u);
    EXPECT_EQ(r->backend(), v1::BACKEND_PERF);
    EXPECT_EQ(r->owner().pid(), getpid());
    ids.push_back(r->id());
  }
  auto full = client().Reserve(Request().Tid(target.pid()).At(0x20000, 1));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  ASSERT_TRUE(full.error().refusal.has_value()) << full.error().ToString();
  const v1::Refusal& why = *full.error().refusal;
  EXPECT_EQ(why.reason(), v1::Refusal::TASK_FULL);
  EXPECT_EQ(why.tid(), target.pid());
  EXPECT_TRUE(why.has_cpu());
  EXPECT_EQ(why.slots(), 4u);
  EXPECT_EQ(why.task_pinned(), 4u);
  EXPECT_EQ(why.weight(), 1u);
  EXPECT_NE(why.explanation().find("task " + std::to_string(target.pid())), std::string::npos);

  // A 32-byte region takes four registers at once: refused with weight 4.
  ASSERT_TRUE(client().Release(ids[0]));
  auto wide = client().Reserve(Request().Tid(target.pid()).At(0x30000, 32));
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().refusal->weight(), 4u);
  EXPECT_EQ(wide.error().refusal->task_pinned(), 3u);

  auto list = client().List();
  ASSERT_TRUE(list);
  EXPECT_EQ(list->reservations_size(), 3);
  auto slots = client().Slots();
  ASSERT_TRUE(slots);
  ASSERT_EQ(slots->tasks_size(), 1);
  EXPECT_EQ(slots->tasks(0).tid(), target.pid());
  EXPECT_EQ(slots->tasks(0).all_cpus(), 3u);
  for (const auto& cpu : slots->cpus()) EXPECT_EQ(cpu.free(), 1u);
}

TEST_F(Reserve, ARegionOverSeveralRegistersIsOneReservation) {
  auto r = client().Reserve(Request().Tid(target.pid()).At(0x40000, 32));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->weight(), 4u);
  ASSERT_EQ(r->registers_size(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r->registers(i).address(), 0x40000u + 8 * i);
    EXPECT_EQ(r->registers(i).length(), 8u);
  }
}

// Not on the fixture: the child connects, so this process holds no client
// of its own until the child is gone.
TEST(KilledClient, GivesItsSlotsBackToTheKernel) {
  ASSERT_EQ(geteuid(), 0u);
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  const unsigned baseline = KernelFreeOnCpu(0);
  ASSERT_EQ(baseline, 4u) << "something outside this test holds cpu0's slots";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t client = fork();
  if (client == 0) {
    auto c = Client::Connect(d.socket());
    int ok = 0;
    if (c) {
      for (int i = 0; i < 3; ++i) {
        ok +=
            c.value()->Reserve(Request().Cpu(0).At(0x50000 + 8 * i, 8, v1::ACCESS_READ_WRITE)).ok();
      }
    }
    (void)!write(ready[1], &ok, sizeof ok);
    for (;;) pause();
  }
  int ok = 0;
  ASSERT_EQ(read(ready[0], &ok, sizeof ok), static_cast<ssize_t>(sizeof ok));
  ASSERT_EQ(ok, 3);
  // The daemon armed them for real: the kernel has one slot left on cpu0.
  EXPECT_EQ(KernelFreeOnCpu(0), 1u);
  kill(client, SIGKILL);
  waitpid(client, nullptr, 0);
  unsigned free_now = 0;
  for (int i = 0; i < 300 && free_now != baseline; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    free_now = KernelFreeOnCpu(0);
  }
  EXPECT_EQ(free_now, baseline);
  auto c = Connect(d);
  ASSERT_TRUE(c);
  auto st = c->Stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->reservations_active(), 0u);
  close(ready[0]);
  close(ready[1]);
}

struct ChildResult {
  int own_child = -1, roots_process = -1, cpu = -1, release_roots = -1, list_count = -1,
      stream_roots = -1, reclaim_roots = -1;
};

TEST(Authorization, AnotherUserMayWatchOnlyWhatItCouldPtrace) {
  ASSERT_EQ(geteuid(), 0u);
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  Sleeper roots;  // root's process
  auto root = Connect(d);
  ASSERT_TRUE(root);
  auto mine = root->Reserve(Request().Tid(roots.pid()).At(0x60000, 8));
  ASSERT_TRUE(mine) << mine.error().ToString();

  const auto got = testing::RunAs(*nobody, ChildResult{}, [&](ChildResult& res) {
    // Changing uid made this process non-dumpable (and so unwatchable,
    // as the kernel would refuse ptrace); an ordinary login is dumpable.
    prctl(PR_SET_DUMPABLE, 1);
    pid_t own = fork();
    if (own == 0) {
      for (;;) pause();
    }
    if (auto c = Client::Connect(d.socket())) {
      auto& cl = *c.value();
      auto code = [](const auto& r) { return r ? 0 : static_cast<int>(r.error().code); };
      res.own_child = code(cl.Reserve(Request().Tid(own).At(0x70000, 8)));
      res.roots_process = code(cl.Reserve(Request().Tid(roots.pid()).At(0x70000, 8)));
      res.cpu = code(cl.Reserve(Request().Cpu(0).At(0x70000, 8, v1::ACCESS_READ_WRITE)));
      res.release_roots = code(cl.Release(mine->id()));
      v1::ReserveRequest reclaim;
      reclaim.set_reclaim(mine->id());
      res.reclaim_roots = code(cl.Reserve(reclaim));
      auto stream = cl.Follow({mine->id()});
      v1::Event e;
      while (stream->Next(&e)) {
      }
      res.stream_roots = static_cast<int>(stream->Finish().error_code());
      auto l = cl.List(true);
      res.list_count = l ? l->reservations_size() : -1;
    }
    kill(own, SIGKILL);
    waitpid(own, nullptr, 0);
  });
  ASSERT_TRUE(got) << "the child as nobody sent no result";
  const ChildResult& res = *got;
  EXPECT_EQ(res.own_child, 0) << "nobody may watch its own child";
  EXPECT_EQ(res.roots_process, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(res.cpu, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(res.release_roots, grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(res.reclaim_roots, grpc::StatusCode::NOT_FOUND) << "nobody may not take root's";
  EXPECT_EQ(res.stream_roots, grpc::StatusCode::NOT_FOUND) << "nobody may not follow root's events";
  EXPECT_EQ(res.list_count, 1) << "nobody sees only its own reservation";
  // Root's reservation survived.
  auto l = root->List(true);
  ASSERT_TRUE(l);
  bool found = false;
  for (const auto& r : l->reservations()) found |= r.id() == mine->id();
  EXPECT_TRUE(found);
}

TEST(Authorization, MembersOfTheCpuGroupMayWatchCpus) {
  ASSERT_EQ(geteuid(), 0u);
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  // nobody's own group is the CPU group here.
  testing::DaemonProcess d({"--cpu-group", std::to_string(nobody->pw_gid)});
  ASSERT_TRUE(d.running()) << d.Log();
  const auto res = testing::RunAs(*nobody, -1, [&](int& res) {
    if (auto c = Client::Connect(d.socket())) {
      auto r = c.value()->Reserve(Request().Cpu(0).At(0xc0000, 8, v1::ACCESS_READ_WRITE));
      res = r ? 0 : static_cast<int>(r.error().code);
      if (r) (void)c.value()->Release(r->id());
    }
  });
  ASSERT_TRUE(res) << "the child as nobody sent no result";
  EXPECT_EQ(*res, 0) << "a member of --cpu-group may watch a CPU";
}

TEST(Quota, ANonRootUidHoldsAtMostItsQuota) {
  ASSERT_EQ(geteuid(), 0u);
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::DaemonProcess d({"--quota-slots", "3", "--lock", "global"});
  ASSERT_TRUE(d.running()) << d.Log();
  using Results = std::array<int, 7>;
  const auto got = testing::RunAs(*nobody, Results{-1, -1, -1, -1, -1, -1, -1}, [&](Results& res) {
    prctl(PR_SET_DUMPABLE, 1);
    pid_t own = fork();
    if (own == 0) {
      for (;;) pause();
    }
    if (auto c = Client::Connect(d.socket())) {
      auto& cl = *c.value();
      auto a = cl.Reserve(Request().Tid(own).At(0xa0000, 16));  // 2 registers
      res[0] = a ? 0 : static_cast<int>(a.error().code);
      auto b = cl.Reserve(Request().Tid(own).At(0xb0000, 16));  // 2 more: over 3
      res[1] = b ? 0 : static_cast<int>(b.error().code);
      res[2] = !b && b.error().refusal ? static_cast<int>(b.error().refusal->reason()) : -1;
      res[3] = !b && b.error().refusal ? static_cast<int>(b.error().refusal->held()) : -1;
      // A Modify counts the registers the reservation gives back: a to 4
      // registers is over 3, to 3 is not.
      if (a) {
        v1::Watch w = Watch(0xc0000, 32);
        auto m4 = cl.Modify(a->id(), w);
        res[4] = !m4 && m4.error().refusal ? static_cast<int>(m4.error().refusal->reason()) : -1;
        res[5] = !m4 && m4.error().refusal ? static_cast<int>(m4.error().refusal->held()) : -1;
        w.set_length(24);
        auto m3 = cl.Modify(a->id(), w);
        res[6] = m3 ? static_cast<int>(m3->weight()) : -static_cast<int>(m3.error().code);
      }
    }
    kill(own, SIGKILL);
    waitpid(own, nullptr, 0);
  });
  ASSERT_TRUE(got) << "the child as nobody sent no result";
  const Results& res = *got;
  EXPECT_EQ(res[0], 0);
  EXPECT_EQ(res[1], grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(res[2], v1::Refusal::QUOTA_EXCEEDED);
  EXPECT_EQ(res[3], 2);
  EXPECT_EQ(res[4], v1::Refusal::QUOTA_EXCEEDED);
  EXPECT_EQ(res[5], 0);  // besides the reservation being modified
  EXPECT_EQ(res[6], 3);
  auto c = Connect(d);
  ASSERT_TRUE(c);
  auto st = c->Stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->lock_mode(), "global");
}

TEST_F(BadRequests, EachGetsAClearStatusAndOthersKeepTheirs) {
  Client* good = &client();
  auto kept = good->Reserve(Request().Tid(target.pid()).At(0x80000, 4));
  ASSERT_TRUE(kept);
  auto bad = Connect();
  ASSERT_TRUE(bad);
  v1::ReserveRequest no_target = Request().Tid(target.pid()).At(0x1000, 4);
  no_target.clear_target();
  v1::ReserveRequest bad_access = Request().Tid(target.pid()).At(0x1000, 4);
  bad_access.mutable_watch()->set_access(static_cast<v1::Access>(99));
  v1::ReserveRequest cpu_range = Request().Cpu(4096).At(0x1000, 8, v1::ACCESS_READ_WRITE);
  struct Case {
    const char* what;
    v1::ReserveRequest req;
    grpc::StatusCode code;
  };
  const Case cases[] = {
      {"no target", no_target, grpc::StatusCode::INVALID_ARGUMENT},
      {"zero length", Request().Tid(target.pid()).At(0x1000, 0),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"overflowing length", Request().Tid(target.pid()).At(UINT64_MAX - 2, 8),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"kernel address on a task", Request().Tid(target.pid()).At(0xffffffff81000000ull, 8),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"non-canonical", Request().Tid(target.pid()).At(0x0000900000000000ull, 8),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"unknown access", bad_access, grpc::StatusCode::INVALID_ARGUMENT},
      {"huge length", Request().Tid(target.pid()).At(0x1000, 1 << 20),
       grpc::StatusCode::RESOURCE_EXHAUSTED},
      {"negative tid", Request().Tid(-5).At(0x1000, 4), grpc::StatusCode::INVALID_ARGUMENT},
      {"nonexistent tid", Request().Tid(0x3ffffff0).At(0x1000, 4), grpc::StatusCode::NOT_FOUND},
      {"cpu out of range", cpu_range, grpc::StatusCode::INVALID_ARGUMENT},
  };
  for (const Case& c : cases) {
    auto r = bad->Reserve(c.req);
    ASSERT_FALSE(r) << c.what;
    EXPECT_EQ(r.error().code, c.code) << c.what << ": " << r.error().message;
    EXPECT_FALSE(r.error().message.empty()) << c.what;
  }
  auto rel = bad->Release(987654321);
  ASSERT_FALSE(rel);
  EXPECT_EQ(rel.error().code, grpc::StatusCode::NOT_FOUND);
  auto l = good->List();
  ASSERT_TRUE(l);
  ASSERT_EQ(l->reservations_size(), 1);
  EXPECT_EQ(l->reservations(0).id(), kept->id());
}

TEST_F(CliSlots, ExplainSaysWhyAWatchDoesNotFit) {
  ASSERT_TRUE(client().Reserve(Request().Tid(target.pid()).At(0x90000, 24)));  // 3 registers
  auto r = testing::Cli(
      daemon().socket(),
      {"slots", "--explain", "--tid", std::to_string(target.pid()), "0x91000", "--len", "16"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.out.find("does not fit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("3 held by the task + 2 needed > 4"), std::string::npos) << r.out;
  auto fits = testing::Cli(
      daemon().socket(),
      {"slots", "--explain", "--tid", std::to_string(target.pid()), "0x91000", "--len", "8"});
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_NE(fits.out.find("fits: needs 1 register"), std::string::npos) << fits.out;
}

}  // namespace
}  // namespace hwwatch
