// Leases through the real daemon: a reservation with a lease outlives its
// session, armed in the kernel, until a client of the same uid reclaims it
// or the lease runs out.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

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

using client::Client;
namespace v1 = ::hwwatch::v1;

v1::ReserveRequest Leased(pid_t tid, int64_t seconds) {
  return Request().Tid(tid).At(0x10000, 8).LeaseSeconds(seconds);
}

// A daemon, a thread to watch, a client (the observer): in that order
// (the thread is forked before the client's threads start).
class Lease : public testing::DaemonTest {
 protected:
  Sleeper target;
};

// Polls List (every reservation, root) for up to 5 s until `pred` holds.
template <class Pred>
bool ListUntil(Client& c, Pred pred) {
  for (int i = 0; i < 100; ++i) {
    auto l = c.List(true);
    if (l && pred(l.value())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

TEST_F(Lease, AnOrphanStaysArmedUntilItsUidReclaimsIt) {
  const unsigned baseline = KernelFreeOnThread(target.pid());
  ASSERT_GE(baseline, 1u) << "something outside this test holds every slot";
  Client& observer = client();
  uint64_t id = 0;
  {
    auto first = Connect();
    ASSERT_TRUE(first);
    auto r = first->Reserve(Leased(target.pid(), 30));
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->lease().seconds(), 30);
    id = r->id();
  }  // the first session ends here
  auto orphaned = [id](const v1::ListResponse& l) {
    return l.reservations_size() == 1 && l.reservations(0).id() == id &&
           l.reservations(0).orphaned();
  };
  ASSERT_TRUE(ListUntil(observer, orphaned)) << "not orphaned within 5 s";
  EXPECT_EQ(KernelFreeOnThread(target.pid()), baseline - 1) << "the orphan is still armed";

  // A live session's reservation cannot be taken over...
  auto second = Connect();
  ASSERT_TRUE(second);
  v1::ReserveRequest reclaim;
  reclaim.set_reclaim(id);
  auto back = second->Reserve(reclaim);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->id(), id);
  EXPECT_FALSE(back->orphaned());
  auto again = observer.Reserve(reclaim);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, grpc::StatusCode::FAILED_PRECONDITION);
  // ...and an unknown one is not found.
  v1::ReserveRequest unknown;
  unknown.set_reclaim(987654321);
  EXPECT_EQ(observer.Reserve(unknown).error().code, grpc::StatusCode::NOT_FOUND);

  // The lease holds for the new session too.
  second.reset();
  EXPECT_TRUE(ListUntil(observer, orphaned));
}

TEST_F(Lease, AnExpiredLeaseGivesTheSlotBack) {
  const unsigned baseline = KernelFreeOnThread(target.pid());
  ASSERT_GE(baseline, 1u);
  Client& observer = client();
  {
    auto first = Connect();
    ASSERT_TRUE(first);
    auto r = first->Reserve(Leased(target.pid(), 1));
    ASSERT_TRUE(r) << r.error().ToString();
  }
  EXPECT_TRUE(ListUntil(observer, [](const v1::ListResponse& l) {
    return l.reservations_size() == 0;
  })) << "a 1 s lease still held after 5 s";
  EXPECT_EQ(KernelFreeOnThread(target.pid()), baseline);
}

TEST_F(Lease, ImpossibleLeasesAreInvalid) {
  for (int64_t s : {int64_t{-1}, int64_t{10} * 24 * 3600}) {
    auto r = client().Reserve(Leased(target.pid(), s));
    ASSERT_FALSE(r) << s;
    EXPECT_EQ(r.error().code, grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(r.error().message.find("lease"), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace hwwatch
