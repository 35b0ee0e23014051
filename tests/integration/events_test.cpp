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
#include "tests/support/process.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::Execer;
using testing::Sleeper;
using testing::TracerOf;

using client::Client;
namespace v1 = ::hwwatch::v1;

v1::ReserveRequest Watch(pid_t tid, v1::Delivery delivery = v1::DELIVERY_DEFAULT) {
  v1::ReserveRequest r;
  r.mutable_target()->set_tid(tid);
  r.mutable_watch()->set_address(0x10000);
  r.mutable_watch()->set_length(8);
  r.mutable_watch()->set_access(v1::ACCESS_WRITE);
  r.set_delivery(delivery);
  return r;
}

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

TEST(Events, ReleaseIsReportedToTheStreamThatFollowsIt) {
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  Sleeper target;
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c) << c.error().ToString();
  auto r = c.value()->Reserve(Watch(target.pid()));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->delivery(), v1::DELIVERY_SAMPLES) << "perf delivers samples by default";
  auto stream = c.value()->Follow({r->id()}, true);
  // A second connection releases it (same uid: allowed).
  auto other = Client::Connect(d.socket());
  ASSERT_TRUE(other);
  ASSERT_TRUE(other.value()->Release(r->id()));
  auto e = NextWithin10s(*stream);
  ASSERT_TRUE(e.has_value()) << "no event within 10 s";
  ASSERT_TRUE(e->has_released()) << e->DebugString();
  EXPECT_EQ(e->released().reservation_id(), r->id());
  EXPECT_EQ(e->released().why(), "released");
  EXPECT_EQ(e->sequence(), 1u);
  EXPECT_GT(e->time().seconds(), 0);
  stream->Cancel();
  auto st = c.value()->Stats();
  ASSERT_TRUE(st);
  EXPECT_GE(st->events_sent(), 1u);
}

TEST(Events, AWatchOnAThreadThatExitsIsReleasedAndReported) {
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  Sleeper target;
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c);
  auto r = c.value()->Reserve(Watch(target.pid()));
  ASSERT_TRUE(r) << r.error().ToString();
  auto stream = c.value()->Follow({}, true);  // the whole session
  target.Kill();
  auto e = NextWithin10s(*stream);
  ASSERT_TRUE(e.has_value()) << "no event within 10 s of the target's exit";
  ASSERT_TRUE(e->has_released()) << e->DebugString();
  EXPECT_EQ(e->released().reservation_id(), r->id());
  EXPECT_EQ(e->released().why(), "target exited");
  auto l = c.value()->List();
  ASSERT_TRUE(l);
  EXPECT_EQ(l->reservations_size(), 0);
  stream->Cancel();
}

// perf reports the exec in the ring of a sampled watch: the watch ends
// with TargetExeced (its address means nothing in the new program).
TEST(Events, ExecEndsASampledWatch) {
  Execer by_tid, by_pid;
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c);
  for (Execer* child : {&by_tid, &by_pid}) {
    SCOPED_TRACE(child == &by_pid ? "pid target" : "tid target");
    v1::ReserveRequest req = Watch(child->pid());
    if (child == &by_pid) req.mutable_target()->set_pid(child->pid());
    auto r = c.value()->Reserve(req);
    ASSERT_TRUE(r) << r.error().ToString();
    auto stream = c.value()->Follow({r->id()}, true);
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

TEST(Events, FollowingAnUnknownReservationIsNotFound) {
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c);
  auto stream = c.value()->Follow({123456789});
  v1::Event e;
  EXPECT_FALSE(stream->Next(&e));
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("123456789"), std::string::npos) << st.error_message();
}

TEST(Events, StopDeliveryGoesToTheTracerOrToTheDaemon) {
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  Sleeper target;
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c);
  // Nobody traces it: a SIGTRAP would kill it, so the daemon traces it and
  // takes the traps itself.
  auto untraced = c.value()->Reserve(Watch(target.pid(), v1::DELIVERY_STOP));
  ASSERT_TRUE(untraced) << untraced.error().ToString();
  EXPECT_EQ(untraced->delivery(), v1::DELIVERY_STOP);
  EXPECT_EQ(untraced->backend(), v1::BACKEND_PERF);
  EXPECT_EQ(TracerOf(target.pid()), d.pid());
  ASSERT_TRUE(c.value()->Release(untraced->id()));
  EXPECT_EQ(TracerOf(target.pid()), 0) << "the daemon lets go with the reservation";
  // This test becomes its debugger: the daemon arms it and stays out.
  ASSERT_EQ(ptrace(PTRACE_SEIZE, target.pid(), nullptr, nullptr), 0);
  auto traced = c.value()->Reserve(Watch(target.pid(), v1::DELIVERY_STOP));
  ASSERT_TRUE(traced) << traced.error().ToString();
  EXPECT_EQ(traced->delivery(), v1::DELIVERY_STOP);
  EXPECT_EQ(TracerOf(target.pid()), getpid());
  ASSERT_TRUE(c.value()->Release(traced->id()));
  // CPU targets have no tracer.
  v1::ReserveRequest cpu = Watch(0, v1::DELIVERY_STOP);
  cpu.mutable_target()->set_cpu(0);
  auto on_cpu = c.value()->Reserve(cpu);
  ASSERT_FALSE(on_cpu);
  EXPECT_EQ(on_cpu.error().code, grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace hwwatch
