// StreamEvents through the real daemon: lifecycle events of a reservation
// (released by its owner, its target exits), the stop delivery's tracer
// destination (a debugger, else the daemon). Hits themselves need debug exceptions, which this host
// may not deliver: they are checked in the emulated machines (label vm).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::Execer;
using testing::Request;
using testing::Sleeper;
using testing::TracerOf;

namespace v1 = ::hwwatch::v1;

// A daemon, a thread to watch, a client: in that order (the thread is
// forked before the client's threads start).
class Events : public testing::DaemonTest {
 protected:
  Sleeper target;
};

// The same with two children that exec when told to.
class EventsOfExec : public testing::DaemonTest {
 protected:
  Execer by_tid, by_pid;
};

// The next event of `s`, or nullopt when none comes within 10 s (the
// stream is then cancelled so the test never hangs).
std::optional<v1::Event> NextWithin10s(client::EventStream& s) {
  auto got = std::async(std::launch::async, [&s] {
    v1::Event e;
    return s.Next(&e) ? std::optional<v1::Event>(e) : std::nullopt;
  });
  if (got.wait_for(std::chrono::seconds(10)) != std::future_status::ready) s.Cancel();
  return got.get();
}

TEST_F(Events, ReleaseIsReportedToTheStreamThatFollowsIt) {
  auto r = client().Reserve(Request().Tid(target.pid()).At(0x10000, 8));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->delivery(), v1::DELIVERY_SAMPLES) << "perf delivers samples by default";
  auto stream = client().Follow({r->id()}, true);
  // A second connection releases it (same uid: allowed).
  auto other = Connect();
  ASSERT_TRUE(other);
  ASSERT_TRUE(other->Release(r->id()));
  auto e = NextWithin10s(*stream);
  ASSERT_TRUE(e.has_value()) << "no event within 10 s";
  ASSERT_TRUE(e->has_released()) << e->DebugString();
  EXPECT_EQ(e->released().reservation_id(), r->id());
  EXPECT_EQ(e->released().why(), "released");
  EXPECT_EQ(e->sequence(), 1u);
  EXPECT_GT(e->time().seconds(), 0);
  stream->Cancel();
  auto st = client().Stats();
  ASSERT_TRUE(st);
  EXPECT_GE(st->events_sent(), 1u);
}

TEST_F(Events, AWatchOnAThreadThatExitsIsReleasedAndReported) {
  auto r = client().Reserve(Request().Tid(target.pid()).At(0x10000, 8));
  ASSERT_TRUE(r) << r.error().ToString();
  auto stream = client().Follow({}, true);  // the whole session
  target.Kill();
  auto e = NextWithin10s(*stream);
  ASSERT_TRUE(e.has_value()) << "no event within 10 s of the target's exit";
  ASSERT_TRUE(e->has_released()) << e->DebugString();
  EXPECT_EQ(e->released().reservation_id(), r->id());
  EXPECT_EQ(e->released().why(), "target exited");
  auto l = client().List();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reservations_size(), 0);
  stream->Cancel();
}

// perf reports the exec in the ring of a sampled watch: the watch ends
// with TargetExeced (its address means nothing in the new program).
TEST_F(EventsOfExec, ExecEndsASampledWatch) {
  for (Execer* child : {&by_tid, &by_pid}) {
    SCOPED_TRACE(child == &by_pid ? "pid target" : "tid target");
    v1::ReserveRequest req = Request().Tid(child->pid()).At(0x10000, 8);
    if (child == &by_pid) req.mutable_target()->set_pid(child->pid());
    auto r = client().Reserve(req);
    ASSERT_TRUE(r) << r.error().ToString();
    auto stream = client().Follow({r->id()}, true);
    child->Exec();
    auto e = NextWithin10s(*stream);
    ASSERT_TRUE(e.has_value()) << "no event within 10 s of the exec";
    ASSERT_TRUE(e->has_execed()) << e->DebugString();
    EXPECT_EQ(e->execed().pid(), child->pid());
    e = NextWithin10s(*stream);
    ASSERT_TRUE(e.has_value());
    ASSERT_TRUE(e->has_released()) << e->DebugString();
    EXPECT_EQ(e->released().why(), "target exec'd");
    stream->Cancel();
  }
}

// A process whose last watch went keeps its place in the program's table of
// watched processes a while: a later watch of it still sees its exec.
TEST_F(EventsOfExec, ExecIsSeenAfterAnEarlierWatchOfTheProcessWasReleased) {
  v1::ReserveRequest req = Request().Tid(by_tid.pid()).At(0x10000, 8);
  for (int i = 0; i < 3; ++i) {
    auto before = client().Reserve(req);
    ASSERT_TRUE(before) << before.error().ToString();
    ASSERT_TRUE(client().Release(before->id()));
  }
  auto r = client().Reserve(req);
  ASSERT_TRUE(r) << r.error().ToString();
  auto stream = client().Follow({r->id()}, true);
  by_tid.Exec();
  auto e = NextWithin10s(*stream);
  ASSERT_TRUE(e.has_value()) << "no event within 10 s of the exec";
  ASSERT_TRUE(e->has_execed()) << e->DebugString();
  EXPECT_EQ(e->execed().pid(), by_tid.pid());
  stream->Cancel();
}

TEST_F(Events, FollowingAnUnknownReservationIsNotFound) {
  auto stream = client().Follow({123456789});
  v1::Event e;
  EXPECT_FALSE(stream->Next(&e));
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("123456789"), std::string::npos) << st.error_message();
}

TEST_F(Events, StopDeliveryGoesToTheTracerOrToTheDaemon) {
  // Nobody traces it: a SIGTRAP would kill it, so the daemon traces it and
  // takes the traps itself.
  auto untraced =
      client().Reserve(Request().Tid(target.pid()).At(0x10000, 8).Delivery(v1::DELIVERY_STOP));
  ASSERT_TRUE(untraced) << untraced.error().ToString();
  EXPECT_EQ(untraced->delivery(), v1::DELIVERY_STOP);
  EXPECT_EQ(untraced->backend(), v1::BACKEND_PERF);
  EXPECT_EQ(TracerOf(target.pid()), daemon().pid());
  ASSERT_TRUE(client().Release(untraced->id()));
  EXPECT_EQ(TracerOf(target.pid()), 0) << "the daemon lets go with the reservation";
  // This test becomes its debugger: the daemon arms it and stays out.
  ASSERT_EQ(ptrace(PTRACE_SEIZE, target.pid(), nullptr, nullptr), 0);
  auto traced =
      client().Reserve(Request().Tid(target.pid()).At(0x10000, 8).Delivery(v1::DELIVERY_STOP));
  ASSERT_TRUE(traced) << traced.error().ToString();
  EXPECT_EQ(traced->delivery(), v1::DELIVERY_STOP);
  EXPECT_EQ(TracerOf(target.pid()), getpid());
  ASSERT_TRUE(client().Release(traced->id()));
  // CPU targets have no tracer.
  auto on_cpu = client().Reserve(Request().Cpu(0).At(0x10000, 8).Delivery(v1::DELIVERY_STOP));
  ASSERT_FALSE(on_cpu);
  EXPECT_EQ(on_cpu.error().code, grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace hwwatch
