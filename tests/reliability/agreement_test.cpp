// R1: random reserve / release / modify sequences through the real daemon
// over gRPC, on thread, process, thread-on-CPU and CPU targets, checked
// against the live kernel after every step:
//  - the daemon admits: it armed real perf events, so the kernel agreed
//    (a kernel refusal comes back as HELD_OUTSIDE: a disagreement);
//  - the daemon refuses (CPU_FULL / TASK_FULL): the same registers opened
//    directly with perf_event_open must fail too (else a disagreement).
// HWWATCH_AGREEMENT_OPS sets the length (default 10,000; the note reports
// 100,000).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/support/daemon_fixture.h"
#include "tests/support/requests.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using client::Client;
using testing::Cpu;
using testing::Sleeper;
namespace v1 = ::hwwatch::v1;

struct Held {
  uint64_t id;
  v1::Target target;
  unsigned weight;
};

// The threads a target covers (CPU targets: none).
std::vector<pid_t> Threads(const v1::Target& t, pid_t process, const std::vector<pid_t>& threads) {
  switch (t.kind_case()) {
    case v1::Target::kTid:
      return {t.tid()};
    case v1::Target::kThreadOnCpu:
      return {t.thread_on_cpu().tid()};
    case v1::Target::kPid:
      return t.pid() == process ? threads : std::vector<pid_t>{t.pid()};
    default:
      return {};
  }
}

// Would the kernel take `weight` more write breakpoints on `t` now? Opens
// them directly (on every thread of a process) and closes them again.
bool KernelTakes(const v1::Target& t, unsigned weight, pid_t process,
                 const std::vector<pid_t>& threads) {
  static volatile uint64_t words[4];
  std::vector<arch::PerfBreakpoint> open;
  std::vector<arch::PerfTarget> where;
  if (t.has_cpu()) {
    where.push_back(arch::PerfTarget::Cpu(static_cast<int>(t.cpu())));
  } else if (t.has_thread_on_cpu()) {
    where.push_back(arch::PerfTarget::ThreadOnCpu(t.thread_on_cpu().tid(),
                                                  static_cast<int>(t.thread_on_cpu().cpu())));
  } else {
    for (pid_t tid : Threads(t, process, threads)) where.push_back(arch::PerfTarget::Thread(tid));
  }
  for (const arch::PerfTarget& w : where) {
    for (unsigned i = 0; i < weight; ++i) {
      auto bp = arch::PerfBreakpoint::Open(
          {reinterpret_cast<uint64_t>(&words[i]), 8, arch::Access::kWrite}, w);
      if (!bp) return false;
      open.push_back(std::move(bp.value()));
    }
  }
  return true;
}

class Agreement : public testing::DaemonTest {
 protected:
  // Targets: three single threads and a process of three (forked before
  // any thread of this test exists).
  Sleeper a, b, c;
  Sleeper proc;
};

TEST_F(Agreement, TheDaemonAdmitsExactlyWhatTheKernelWould) {
  const char* env = std::getenv("HWWATCH_AGREEMENT_OPS");
  const int ops = env ? std::atoi(env) : 10000;
  Client& cl = client();
  const std::vector<pid_t> singles = {a.pid(), b.pid(), c.pid()};
  const std::vector<pid_t> proc_threads = {proc.pid()};
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  ASSERT_TRUE(KernelTakes(Cpu(0), 4, 0, {})) << "something outside this test holds debug registers";

  std::mt19937_64 rng(20261125);
  auto pick = [&](uint64_t n) { return static_cast<uint64_t>(rng() % n); };
  auto random_target = [&] {
    v1::Target t;
    switch (pick(10)) {
      case 0:
      case 1:
      case 2:
      case 3:
        t.set_tid(singles[pick(singles.size())]);
        break;
      case 4:
      case 5:
        t.set_pid(proc.pid());
        break;
      case 6:
      case 7:
        t.mutable_thread_on_cpu()->set_tid(singles[pick(singles.size())]);
        t.mutable_thread_on_cpu()->set_cpu(static_cast<uint32_t>(pick(cpus)));
        break;
      default:
        t.set_cpu(static_cast<uint32_t>(pick(cpus)));
    }
    return t;
  };
  uint64_t next_address = 0x100000;
  auto watch = [&](unsigned weight) {
    const v1::Watch w = testing::Watch(next_address, 8 * weight);
    next_address += 0x40;  // every watch distinct: no sharing
    return w;
  };
  std::vector<Held> held;
  int admitted = 0, refused = 0, modified = 0, modify_refused = 0, disagreements = 0, errors = 0;
  std::string first_disagreement;
  auto disagree = [&](const std::string& what) {
    if (disagreements++ == 0) first_disagreement = what;
  };
  for (int op = 0; op < ops; ++op) {
    const uint64_t kind = held.empty() ? 0 : pick(10);
    if (kind < 5) {
      v1::ReserveRequest req;
      *req.mutable_target() = random_target();
      const unsigned weight = 1 + static_cast<unsigned>(pick(4));
      *req.mutable_watch() = watch(weight);
      req.set_delivery(v1::DELIVERY_COUNT);
      auto r = cl.Reserve(req);
      if (r) {
        ++admitted;
        held.push_back({r->id(), req.target(), weight});
      } else if (r.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED && r.error().refusal &&
                 r.error().refusal->reason() != v1::Refusal::HELD_OUTSIDE) {
        ++refused;
        if (KernelTakes(req.target(), weight, proc.pid(), proc_threads)) {
          disagree("op " + std::to_string(op) + ": refused " + req.target().ShortDebugString() +
                   " weight " + std::to_string(weight) + " (" + r.error().message +
                   ") but the kernel takes it");
        }
      } else if (r.error().refusal && r.error().refusal->reason() == v1::Refusal::HELD_OUTSIDE) {
        disagree("op " + std::to_string(op) +
                 ": the engine admitted, the kernel refused: " + r.error().message);
      } else {
        ++errors;
        ADD_FAILURE() << "op " << op << ": " << r.error().ToString();
      }
    } else if (kind < 8) {
      const size_t i = pick(held.size());
      ASSERT_TRUE(cl.Release(held[i].id)) << "op " << op;
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      Held& h = held[pick(held.size())];
      const unsigned weight = 1 + static_cast<unsigned>(pick(4));
      auto m = cl.Modify(h.id, watch(weight));
      if (m) {
        ++modified;
        h.weight = weight;
      } else if (m.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED && m.error().refusal &&
                 m.error().refusal->reason() != v1::Refusal::HELD_OUTSIDE) {
        ++modify_refused;
        // As if the old watch were released: the difference must not fit.
        if (weight <= h.weight ||
            KernelTakes(h.target, weight - h.weight, proc.pid(), proc_threads)) {
          disagree("op " + std::to_string(op) + ": modify of " + h.target.ShortDebugString() +
                   " from " + std::to_string(h.weight) + " to " + std::to_string(weight) +
                   " refused (" + m.error().message + ") but the kernel takes it");
        }
      } else if (m.error().refusal && m.error().refusal->reason() == v1::Refusal::HELD_OUTSIDE) {
        disagree("op " + std::to_string(op) + ": the engine admitted a modify, the kernel refused");
      } else {
        ++errors;
        ADD_FAILURE() << "op " << op << " modify: " << m.error().ToString();
      }
    }
  }
  for (const Held& h : held) EXPECT_TRUE(cl.Release(h.id));
  std::printf(
      "agreement: %d ops: %d admitted, %d refused, %d modified, %d modify refused, "
      "%d disagreements, %d errors\n",
      ops, admitted, refused, modified, modify_refused, disagreements, errors);
  EXPECT_EQ(disagreements, 0) << first_disagreement;
  EXPECT_GT(refused, ops / 50) << "the sequence should often fill the slots";
  EXPECT_GT(admitted, ops / 10);
  EXPECT_TRUE(KernelTakes(Cpu(0), 4, 0, {})) << "registers left armed after every release";
}

}  // namespace
}  // namespace hwwatch
