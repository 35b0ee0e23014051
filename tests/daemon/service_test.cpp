// The daemon in-process (so the sanitizer builds see both sides): real
// gRPC over a real Unix socket, many concurrent clients.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>

#include <condition_variable>
#include <mutex>

#include "client/client.h"
#include "daemon/daemon.h"
#include "tests/support/process.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch::daemon {
namespace {

using testing::Sleeper;

class InProcessDaemon {
 public:
  InProcessDaemon() : socket_(dir_.File("d.sock")) {
    DaemonOptions o;
    o.socket_path = socket_;
    o.handle_signals = false;
    error_ = daemon_.Start(o);
    if (error_.empty()) thread_ = std::thread([this] { daemon_.Run(); });
  }
  ~InProcessDaemon() {
    daemon_.Stop();
    if (thread_.joinable()) thread_.join();
  }
  const std::string& error() const { return error_; }
  const std::string& socket() const { return socket_; }

 private:
  testing::TempDir dir_;
  std::string socket_;
  Daemon daemon_;
  std::string error_;
  std::thread thread_;
};

TEST(Service, ModifyOfAnUnknownReservationIsNotFound) {
  InProcessDaemon d;
  ASSERT_EQ(d.error(), "");
  auto c = client::Client::Connect(d.socket());
  ASSERT_TRUE(c) << c.error().ToString();
  auto r = c.value()->Modify(424242, testing::Watch(0x10000, 8));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(r.error().message.find("424242"), std::string::npos) << r.error().message;
}

// Several clients at once each follow their own reservation and see its
// release, and only that (the sanitizer builds run this over the hub, the
// sample reader and the stream writers).
TEST(Service, StreamsSeeTheirOwnReleasesConcurrently) {
  InProcessDaemon d;
  ASSERT_EQ(d.error(), "");
  constexpr int kClients = 4, kRounds = 5;
  std::vector<std::unique_ptr<Sleeper>> targets;
  for (int i = 0; i < kClients; ++i) targets.push_back(std::make_unique<Sleeper>());
  std::atomic<int> seen{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto c = client::Client::Connect(d.socket());
      if (!c) return;
      for (int round = 0; round < kRounds; ++round) {
        auto r = c.value()->Reserve(testing::Request().Tid(targets[i]->pid()).At(0x10000, 8));
        if (!r) {
          ++wrong;
          continue;
        }
        auto stream = c.value()->Follow({}, true);
        if (!c.value()->Release(r->id())) ++wrong;
        v1::Event e;
        if (stream->Next(&e) && e.has_released() && e.released().reservation_id() == r->id()) {
          ++seen;
        } else {
          ++wrong;
        }
        stream->Cancel();
        while (stream->Next(&e)) {
        }
        if (stream->Finish().error_code() != grpc::StatusCode::CANCELLED) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.load(), kClients * kRounds);
  EXPECT_EQ(wrong.load(), 0);
}

// An open stream does not hold the daemon up: stopping it ends the stream.
TEST(Service, OpenStreamsEndWhenTheDaemonStops) {
  auto d = std::make_unique<InProcessDaemon>();
  ASSERT_EQ(d->error(), "");
  auto c = client::Client::Connect(d->socket());
  ASSERT_TRUE(c) << c.error().ToString();
  auto stream = c.value()->Follow({}, true);
  auto st = c.value()->Stats();  // the stream is established by now
  ASSERT_TRUE(st);
  d.reset();  // joins the daemon's thread: returns only if the stream let go
  v1::Event e;
  EXPECT_FALSE(stream->Next(&e));
  EXPECT_FALSE(stream->Finish().ok());
}

TEST(Service, EmptyReserveIsInvalidWithAReason) {
  InProcessDaemon d;
  ASSERT_EQ(d.error(), "");
  auto c = client::Client::Connect(d.socket());
  ASSERT_TRUE(c) << c.error().ToString();
  auto r = c.value()->Reserve(v1::ReserveRequest());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(r.error().message.find("target"), std::string::npos) << r.error().message;
}

TEST(Service, ConcurrentClientsEachSeeThemselves) {
  InProcessDaemon d;
  ASSERT_EQ(d.error(), "");
#if defined(__SANITIZE_THREAD__)
  // TSan checks every call through uninstrumented gRPC slowly; fewer calls
  // still cross every thread of the server.
  constexpr int kClients = 8;
  constexpr int kCalls = 5;
#else
  constexpr int kClients = 16;
  constexpr int kCalls = 50;
#endif
  std::atomic<int> ok{0};
  std::vector<uint64_t> sessions(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      auto c = client::Client::Connect(d.socket());
      if (!c) return;
      for (int k = 0; k < kCalls; ++k) {
        auto caps = c.value()->GetCapabilities();
        auto st = c.value()->Stats();
        if (caps && st && st->caller().pid() == getpid()) {
          sessions[i] = st->caller().session_id();
          ok.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * kCalls);
  // Every connection is its own session.
  std::sort(sessions.begin(), sessions.end());
  EXPECT_EQ(std::unique(sessions.begin(), sessions.end()), sessions.end());
  EXPECT_NE(sessions.front(), 0u);

  auto c = client::Client::Connect(d.socket());
  ASSERT_TRUE(c);
  auto st = c.value()->Stats();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->calls().at("GetCapabilities"), uint64_t{kClients * kCalls});
}

TEST(Service, HealthServiceAnswersServing) {
  InProcessDaemon d;
  ASSERT_EQ(d.error(), "");
  auto channel = grpc::CreateChannel("unix:" + d.socket(), grpc::InsecureChannelCredentials());
  // grpc.health.v1.Health/Check with an empty request: a generic call so
  // the test needs no generated health stubs.
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer req, resp;
  grpc::Slice empty("");
  req = grpc::ByteBuffer(&empty, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req, &resp,
                    [&](grpc::Status s) {
                      std::lock_guard lock(mu);
                      status = s;
                      done = true;
                      cv.notify_one();
                    });
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(15), [&] { return done; }));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(resp.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status: SERVING (1)} is field 1, varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace hwwatch::daemon
