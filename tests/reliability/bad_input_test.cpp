// R4: a corpus of bad and hostile requests against the real daemon. Each
// gets its expected gRPC status and a reason; a bystander's reservation
// stays armed throughout (checked in the kernel), and the daemon's memory
// stays bounded.
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/process.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using client::Client;
using testing::KernelFreeOnThread;
using testing::Request;
using testing::Sleeper;
namespace v1 = ::hwwatch::v1;

v1::ReserveRequest Good(pid_t tid) { return Request().Tid(tid).At(0x10000, 8); }

struct Case {
  const char* name;
  std::function<void(v1::ReserveRequest&)> spoil;
  grpc::StatusCode want;
};

long RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A pid that existed and is gone (forked, reaped).
pid_t RecycledPid() {
  const pid_t p = fork();
  if (p == 0) _exit(0);
  waitpid(p, nullptr, 0);
  return p;
}

// A raw connection to the daemon's socket that sends `bytes` (and keeps
// the connection open until destroyed).
class RawConnection {
 public:
  RawConnection(const std::string& path, const std::string& bytes) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && !bytes.empty()) {
      (void)!write(fd_, bytes.data(), bytes.size());
    }
  }
  ~RawConnection() { close(fd_); }

 private:
  int fd_ = -1;
};

class BadInput : public testing::DaemonTest {
 protected:
  BadInput() : DaemonTest({"--quota-slots", "4"}) {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DaemonTest::SetUp());
    // A 5 MiB request takes a while under the sanitizers.
    client().set_call_timeout(std::chrono::seconds(60));
    bystander_ = Connect();
    ASSERT_TRUE(bystander_);
    auto kept = bystander_->Reserve(Good(bystanders_target_.pid()));
    ASSERT_TRUE(kept) << kept.error().ToString();
    kept_ = kept->id();
  }
  // The daemon still shuts down cleanly: exit 0, which a sanitized build
  // turns into "no report, no leak" (its reports end it with another code).
  void TearDown() override {
    client_.reset();
    bystander_.reset();
    const int exit_code = daemon().Terminate();
    const std::string log = daemon().Log();  // with what it printed at exit
    EXPECT_EQ(exit_code, 0) << log.substr(log.size() > 8000 ? log.size() - 8000 : 0);
  }
  // The bystander's reservation is still there and armed in the kernel.
  void ExpectBystanderIntact(const std::string& after) {
    auto l = bystander_->List();
    ASSERT_TRUE(l) << after << ": " << l.error().ToString();
    ASSERT_EQ(l->reservations_size(), 1) << after;
    EXPECT_EQ(l->reservations(0).id(), kept_) << after;
    EXPECT_EQ(KernelFreeOnThread(bystanders_target_.pid()), 3u) << after;
  }
  Sleeper target_;
  Sleeper bystanders_target_;
  std::unique_ptr<Client> bystander_;
  uint64_t kept_ = 0;
};

TEST_F(BadInput, EveryBadReserveGetsItsStatusAndAReason) {
  const pid_t tid = target_.pid();
  const pid_t gone = RecycledPid();
  const uint32_t cpus = std::thread::hardware_concurrency();
  using S = grpc::StatusCode;
  const std::vector<Case> cases = {
    {"no target", [](auto& r) { r.clear_target(); }, S::INVALID_ARGUMENT},
    {"tid 0", [](auto& r) { r.mutable_target()->set_tid(0); }, S::INVALID_ARGUMENT},
    {"negative tid", [](auto& r) { r.mutable_target()->set_tid(-5); }, S::INVALID_ARGUMENT},
    {"negative pid", [](auto& r) { r.mutable_target()->set_pid(-1); }, S::INVALID_ARGUMENT},
    {"nonexistent tid", [](auto& r) { r.mutable_target()->set_tid(999999999); }, S::NOT_FOUND},
    {"nonexistent pid", [](auto& r) { r.mutable_target()->set_pid(999999999); }, S::NOT_FOUND},
    {"recycled pid", [&](auto& r) { r.mutable_target()->set_tid(gone); }, S::NOT_FOUND},
    {"recycled pid, process", [&](auto& r) { r.mutable_target()->set_pid(gone); }, S::NOT_FOUND},
    {"cpu out of range", [&](auto& r) { r.mutable_target()->set_cpu(cpus + 1000); },
     S::INVALID_ARGUMENT},
    {"huge cpu", [](auto& r) { r.mutable_target()->set_cpu(0xffffffffu); }, S::INVALID_ARGUMENT},
    {"thread_on_cpu bad cpu",
     [&](auto& r) {
       r.mutable_target()->mutable_thread_on_cpu()->set_tid(tid);
       r.mutable_target()->mutable_thread_on_cpu()->set_cpu(cpus + 7);
     },
     S::INVALID_ARGUMENT},
    {"thread_on_cpu tid 0",
     [](auto& r) { r.mutable_target()->mutable_thread_on_cpu()->set_cpu(0); }, S::INVALID_ARGUMENT},
    {"no watch", [](auto& r) { r.clear_watch(); }, S::INVALID_ARGUMENT},
    {"length 0", [](auto& r) { r.mutable_watch()->set_length(0); }, S::INVALID_ARGUMENT},
    {"huge length", [](auto& r) { r.mutable_watch()->set_length(uint64_t{1} << 40); },
     S::RESOURCE_EXHAUSTED},
    {"length past the address space",
     [](auto& r) {
       r.mutable_watch()->set_address(0xfffffffffffffff0u);
       r.mutable_watch()->set_length(0x20);
     },
     S::INVALID_ARGUMENT},
    {"max length", [](auto& r) { r.mutable_watch()->set_length(UINT64_MAX); }, S::INVALID_ARGUMENT},
    {"kernel address on a thread",
     [](auto& r) { r.mutable_watch()->set_address(0xffffffff81000000u); }, S::INVALID_ARGUMENT},
    {"non-canonical address", [](auto& r) { r.mutable_watch()->set_address(0x0000800000000000u); },
     S::INVALID_ARGUMENT},
    {"range crossing the user limit",
     [](auto& r) {
       r.mutable_watch()->set_address(0x00007ffffffffffcu);
       r.mutable_watch()->set_length(8);
     },
     S::INVALID_ARGUMENT},
    {"access unspecified", [](auto& r) { r.mutable_watch()->set_access(v1::ACCESS_UNSPECIFIED); },
     S::INVALID_ARGUMENT},
    {"unknown access", [](auto& r) { r.mutable_watch()->set_access(static_cast<v1::Access>(99)); },
     S::INVALID_ARGUMENT},
#if defined(__x86_64__)
    {"read-only on x86", [](auto& r) { r.mutable_watch()->set_access(v1::ACCESS_READ); },
     S::INVALID_ARGUMENT},
    {"more than 4 registers", [](auto& r) { r.mutable_watch()->set_length(40); },  // 5 x 8 bytes
     S::RESOURCE_EXHAUSTED},
    {"unaligned 32 bytes need 5",
     [](auto& r) {
       r.mutable_watch()->set_address(0x10004);
       r.mutable_watch()->set_length(32);
     },
     S::RESOURCE_EXHAUSTED},
#endif
    {"unknown backend", [](auto& r) { r.set_backend(static_cast<v1::Backend>(7)); },
     S::INVALID_ARGUMENT},
    {"unknown delivery", [](auto& r) { r.set_delivery(static_cast<v1::Delivery>(9)); },
     S::INVALID_ARGUMENT},
    {"slot with perf",
     [](auto& r) {
       r.set_backend(v1::BACKEND_PERF);
       r.set_slot(1);
     },
     S::INVALID_ARGUMENT},
    {"slot 99", [](auto& r) { r.set_slot(99); }, S::INVALID_ARGUMENT},
    {"ptrace on a cpu",
     [](auto& r) {
       r.mutable_target()->set_cpu(0);
       r.set_backend(v1::BACKEND_PTRACE);
     },
     S::INVALID_ARGUMENT},
    {"ptrace with samples",
     [](auto& r) {
       r.set_backend(v1::BACKEND_PTRACE);
       r.set_delivery(v1::DELIVERY_SAMPLES);
     },
     S::INVALID_ARGUMENT},
    {"stop on a cpu",
     [](auto& r) {
       r.mutable_target()->set_cpu(0);
       r.set_delivery(v1::DELIVERY_STOP);
     },
     S::INVALID_ARGUMENT},
    {"negative lease", [](auto& r) { r.mutable_lease()->set_seconds(-1); }, S::INVALID_ARGUMENT},
    {"lease of a year", [](auto& r) { r.mutable_lease()->set_seconds(365 * 86400); },
     S::INVALID_ARGUMENT},
    {"reclaim unknown", [](auto& r) { r.set_reclaim(123456789); }, S::NOT_FOUND},
    {"reclaim 0", [](auto& r) { r.set_reclaim(0); }, S::NOT_FOUND},
    {"oversized label (the daemon takes 256 KiB)",
     [](auto& r) { r.set_label(std::string(1 << 20, 'x')); }, S::RESOURCE_EXHAUSTED},
  };
  ASSERT_GE(cases.size(), 30u);
  for (const Case& k : cases) {
    v1::ReserveRequest req = Good(tid);
    k.spoil(req);
    auto r = client().Reserve(req);
    EXPECT_FALSE(r) << k.name << ": accepted";
    if (r) {
      (void)client().Release(r->id());
      continue;
    }
    EXPECT_EQ(r.error().code, k.want) << k.name << ": " << r.error().ToString();
    EXPECT_FALSE(r.error().message.empty()) << k.name << ": no reason given";
  }
  ExpectBystanderIntact("after the bad reserves");
  EXPECT_EQ(KernelFreeOnThread(tid), 4u) << "a refused request left a register armed";
}

TEST_F(BadInput, BadIdsForEveryOtherCall) {
  using S = grpc::StatusCode;
  auto own = client().Reserve(Good(target_.pid()));
  ASSERT_TRUE(own);
  v1::Watch w = Good(0).watch();
  struct IdCase {
    const char* name;
    std::function<grpc::StatusCode()> call;
    grpc::StatusCode want;
  };
  auto code = [](const auto& r) { return r ? S::OK : r.error().code; };
  v1::Watch zero = w;
  zero.set_length(0);
  v1::Watch kernel = w;
  kernel.set_address(0xffff800000000000u);
  const std::vector<IdCase> cases = {
      {"modify unknown", [&] { return code(client().Modify(987654321, w)); }, S::NOT_FOUND},
      {"modify 0", [&] { return code(client().Modify(0, w)); }, S::NOT_FOUND},
      {"modify to length 0", [&] { return code(client().Modify(own->id(), zero)); },
       S::INVALID_ARGUMENT},
      {"modify to a kernel address", [&] { return code(client().Modify(own->id(), kernel)); },
       S::INVALID_ARGUMENT},
      {"release unknown", [&] { return code(client().Release(987654321)); }, S::NOT_FOUND},
      {"release 0", [&] { return code(client().Release(0)); }, S::NOT_FOUND},
      {"reclaim a live one",
       [&] {
         v1::ReserveRequest r;
         r.set_reclaim(own->id());
         return code(client().Reserve(r));
       },
       S::FAILED_PRECONDITION},
      {"stream unknown",
       [&] {
         auto s = client().Follow({55555555});
         v1::Event e;
         while (s->Next(&e)) {
         }
         return s->Finish().error_code();
       },
       S::NOT_FOUND},
      {"release twice",
       [&] {
         (void)client().Release(own->id());
         return code(client().Release(own->id()));
       },
       S::NOT_FOUND},
  };
  for (const IdCase& k : cases) EXPECT_EQ(k.call(), k.want) << k.name;
  // Slots probes of bad watches answer (OK) with the reason inside.
  v1::SlotsRequest probe;
  probe.mutable_probe_target()->set_tid(target_.pid());
  *probe.mutable_probe_watch() = zero;
  auto s = client().Slots(probe);
  ASSERT_TRUE(s) << s.error().ToString();
  EXPECT_FALSE(s->probe().fits());
  EXPECT_FALSE(s->probe().refusal().explanation().empty());
  ExpectBystanderIntact("after the bad ids");
}

TEST_F(BadInput, ForeignReservationsAreAbsentToAnotherUser) {
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  using Results = std::array<int, 5>;
  const auto results = testing::RunAs(*nobody, Results{-1, -1, -1, -1, -1}, [&](Results& got) {
    if (auto c = Client::Connect(daemon().socket())) {
      auto& cl = *c.value();
      auto code = [](const auto& r) { return r ? 0 : static_cast<int>(r.error().code); };
      got[0] = code(cl.Modify(kept_, Good(0).watch()));
      got[1] = code(cl.Release(kept_));
      v1::ReserveRequest reclaim;
      reclaim.set_reclaim(kept_);
      got[2] = code(cl.Reserve(reclaim));
      auto s = cl.Follow({kept_});
      v1::Event e;
      while (s->Next(&e)) {
      }
      got[3] = static_cast<int>(s->Finish().error_code());
      // Listing everything shows a non-root caller only its own (none).
      auto all = cl.List(true);
      got[4] = all ? all->reservations_size() : -1;
    }
  });
  ASSERT_TRUE(results) << "the child as nobody sent no result";
  const Results& got = *results;
  EXPECT_EQ(got[4], 0) << "reservations another user sees with List(all)";
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i], static_cast<int>(grpc::StatusCode::NOT_FOUND))
        << "call " << i << " (modify, release, reclaim, stream) of another user's reservation";
  }
  ExpectBystanderIntact("after another user's attempts");
}

TEST_F(BadInput, FloodsGarbageAndSilentReadersHurtNobodyElse) {
  const long rss_before = RssKiB(daemon().pid());
  // A flood of Reserve from one uid (root here: quotas do not apply; each
  // reservation is released again) and of refused ones.
  for (int i = 0; i < 2000; ++i) {
    auto r = client().Reserve(Good(target_.pid()));
    ASSERT_TRUE(r) << i << ": " << r.error().ToString();
    ASSERT_TRUE(client().Release(r->id()));
    v1::ReserveRequest bad = Good(target_.pid());
    bad.mutable_watch()->set_length(0);
    EXPECT_FALSE(client().Reserve(bad));
  }
  // Raw garbage, a half-open HTTP/2 connection (preface, then silence), and
  // a connection that says nothing at all.
  RawConnection garbage(daemon().socket(), std::string(4096, '\x17'));
  RawConnection half_open(daemon().socket(), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  RawConnection silent(daemon().socket(), "");
  // A stream subscribed to every lifecycle event that is never read, while
  // this client makes thousands of events for it.
  auto never_read = client().Follow({}, true);
  for (int i = 0; i < 3000; ++i) {
    auto r = client().Reserve(Good(target_.pid()));
    ASSERT_TRUE(r) << r.error().ToString();
    ASSERT_TRUE(client().Release(r->id()));
  }
  // Others are served meanwhile, promptly.
  auto other = Client::Connect(daemon().socket());
  ASSERT_TRUE(other) << "a new client could not connect";
  auto caps = other.value()->GetCapabilities();
  EXPECT_TRUE(caps) << caps.error().ToString();
  ExpectBystanderIntact("after floods and garbage");
  const long rss_after = RssKiB(daemon().pid());
  EXPECT_LT(rss_after - rss_before, 64 * 1024)
      << "daemon RSS grew from " << rss_before << " KiB to " << rss_after << " KiB";
  // The daemon handed every event on (to gRPC's flow-controlled buffers,
  // which absorb this many) or counted it lost; it kept none back.
  auto st = client().Stats();
  ASSERT_TRUE(st);
  EXPECT_GE(st->events_sent() + st->events_lost(), 3000u);
  never_read->Cancel();
}

TEST_F(BadInput, AUserFloodStopsAtItsQuota) {
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  using Results = std::array<int, 3>;  // admitted, quota refusals, other errors
  const auto results = testing::RunAs(*nobody, Results{0, 0, -1}, [&](Results& got) {
    prctl(PR_SET_DUMPABLE, 1);
    const pid_t own = fork();
    if (own == 0) {
      for (;;) pause();
    }
    got[2] = 0;
    if (auto c = Client::Connect(daemon().socket())) {
      for (int i = 0; i < 200; ++i) {
        v1::ReserveRequest r = Good(own);
        r.mutable_watch()->set_address(0x10000 + 8 * static_cast<uint64_t>(i % 2));
        auto res = c.value()->Reserve(r);
        if (res) {
          ++got[0];
        } else if (res.error().refusal &&
                   res.error().refusal->reason() == v1::Refusal::QUOTA_EXCEEDED) {
          ++got[1];
        } else if (res.error().code != grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++got[2];
        }
      }
    }
    kill(own, SIGKILL);
    waitpid(own, nullptr, 0);
  });
  ASSERT_TRUE(results) << "the child as nobody sent no result";
  const Results& got = *results;
  EXPECT_EQ(got[2], 0) << "errors other than honest refusals";
  EXPECT_LE(got[0], 4) << "the quota is 4 registers";
  EXPECT_GT(got[1], 100) << "most of the flood hit the quota";
  ExpectBystanderIntact("after a user's flood");
}

}  // namespace
}  // namespace hwwatch
