// R7 (and the load figures' correctness side): many clients at once, each
// reserving, modifying and releasing on shared targets through the real
// daemon. No errors other than honest RESOURCE_EXHAUSTED, no reservation
// lost or left over, every slot back in the kernel. Run by the sanitizer
// builds too (label service), where the daemon is built with ASan+UBSan or
// TSan and halts at the first report. HWWATCH_STRESS_CLIENTS and
// HWWATCH_STRESS_OPS size it (default 64 x 150).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "tests/support/process.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using client::Client;
using testing::KernelFreeOnThread;
using testing::Sleeper;
namespace v1 = ::hwwatch::v1;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

TEST(Concurrency, ManyClientsLoseNothing) {
  const int clients = EnvInt("HWWATCH_STRESS_CLIENTS", 64);
  const int ops = EnvInt("HWWATCH_STRESS_OPS", 150);
  std::vector<std::unique_ptr<Sleeper>> targets;
  for (int i = 0; i < 16; ++i) targets.push_back(std::make_unique<Sleeper>());
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  for (const auto& t : targets) ASSERT_EQ(KernelFreeOnThread(t->pid()), 4u);

  std::atomic<int> admitted{0}, exhausted{0}, errors{0}, held_total{0};
  std::vector<std::string> first_error(static_cast<size_t>(clients));
  std::vector<std::unique_ptr<Client>> conns;
  for (int c = 0; c < clients; ++c) {
    auto conn = Client::Connect(d.socket());
    ASSERT_TRUE(conn) << conn.error().ToString();
    conn.value()->set_call_timeout(std::chrono::seconds(60));
    conns.push_back(std::move(conn.value()));
  }
  std::vector<std::vector<uint64_t>> held(static_cast<size_t>(clients));
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Client& cl = *conns[static_cast<size_t>(c)];
      std::vector<uint64_t>& mine = held[static_cast<size_t>(c)];
      std::mt19937 rng(static_cast<unsigned>(c));
      auto fail = [&](const std::string& what) {
        if (errors++ == 0 || first_error[static_cast<size_t>(c)].empty()) {
          first_error[static_cast<size_t>(c)] = what;
        }
      };
      for (int i = 0; i < ops; ++i) {
        const unsigned kind = rng() % 10;
        if (kind < 5 || mine.empty()) {
          v1::ReserveRequest req;
          req.mutable_target()->set_tid(targets[rng() % targets.size()]->pid());
          req.mutable_watch()->set_address(0x100000 + 0x40 * static_cast<uint64_t>(rng() % 256));
          req.mutable_watch()->set_length(8 * (1 + rng() % 2));
          req.mutable_watch()->set_access(v1::ACCESS_WRITE);
          req.set_delivery(rng() % 2 ? v1::DELIVERY_COUNT : v1::DELIVERY_SAMPLES);
          auto r = cl.Reserve(req);
          if (r) {
            ++admitted;
            mine.push_back(r->id());
          } else if (r.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++exhausted;
          } else {
            fail("reserve: " + r.error().ToString());
          }
        } else if (kind < 8) {
          const size_t k = rng() % mine.size();
          auto r = cl.Release(mine[k]);
          if (!r) fail("release: " + r.error().ToString());
          mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
        } else {
          v1::Watch w;
          w.set_address(0x200000 + 0x40 * static_cast<uint64_t>(rng() % 256));
          w.set_length(8 * (1 + rng() % 2));
          w.set_access(v1::ACCESS_WRITE);
          auto r = cl.Modify(mine[rng() % mine.size()], w);
          // A shared watch cannot move (FAILED_PRECONDITION); a full thread
          // refuses (RESOURCE_EXHAUSTED): both are honest answers.
          if (!r && r.error().code != grpc::StatusCode::RESOURCE_EXHAUSTED &&
              r.error().code != grpc::StatusCode::FAILED_PRECONDITION) {
            fail("modify: " + r.error().ToString());
          }
        }
      }
      held_total += static_cast<int>(mine.size());
    });
  }
  for (auto& t : threads) t.join();
  std::string why;
  for (const auto& e : first_error) {
    if (!e.empty()) why += e + "\n";
  }
  EXPECT_EQ(errors.load(), 0) << why;
  // What the clients hold is exactly what the daemon holds.
  auto list = conns[0]->List(true);
  ASSERT_TRUE(list);
  EXPECT_EQ(list->reservations_size(), held_total.load()) << "reservations lost or left over";
  conns.clear();  // every session ends: the daemon releases the rest
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c);
  int left = -1;
  for (int i = 0; i < 40 && left != 0; ++i) {
    auto l = c.value()->List(true);
    ASSERT_TRUE(l);
    left = l->reservations_size();
    if (left != 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(left, 0);
  for (const auto& t : targets) EXPECT_EQ(KernelFreeOnThread(t->pid()), 4u);
  // A clean exit: a sanitized daemon's report (or leak) ends it otherwise.
  c.value().reset();
  const int exit_code = d.Terminate();
  const std::string log = d.Log();  // with what it printed at exit
  EXPECT_EQ(exit_code, 0) << log.substr(log.size() > 8000 ? log.size() - 8000 : 0);
  std::printf("concurrency: %d clients x %d ops: %d admitted, %d refused (slots), %d errors\n",
              clients, ops, admitted.load(), exhausted.load(), errors.load());
}

}  // namespace
}  // namespace hwwatch
