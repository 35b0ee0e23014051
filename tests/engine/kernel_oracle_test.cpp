// The live kernel as the oracle: random reserve/release sequences on
// thread, thread-on-CPU and CPU targets are replayed through real
// perf_event_open(PERF_TYPE_BREAKPOINT) and close() on this host, and every
// admit/deny decision of the engine must equal the kernel's (ENOSPC =
// deny). HWWATCH_ORACLE_OPS sets the number of operations (default 10000).
#include <dirent.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "arch/capabilities.h"
#include "arch/child_process.h"
#include "arch/perf_event.h"
#include "daemon/engine/constraints.h"

namespace hwwatch::engine {
namespace {

using arch::PerfBreakpoint;
using arch::PerfTarget;

constexpr int kHelperThreads = 5;

// The helper process: kHelperThreads threads that sleep until killed.
int HelperBody(void*) {
  for (int i = 0; i < kHelperThreads; ++i) {
    pthread_t t;
    pthread_create(
        &t, nullptr,
        [](void*) -> void* {
          for (;;) pause();
        },
        nullptr);
  }
  for (;;) pause();
}

std::vector<pid_t> Threads(pid_t pid) {
  std::vector<pid_t> tids;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') tids.push_back(std::atoi(e->d_name));
    }
    closedir(d);
  }
  return tids;
}

static volatile uint64_t watched;

arch::BreakpointSpec Spec() {
  return {reinterpret_cast<uint64_t>(&watched), 1, arch::Access::kReadWrite};
}

PerfTarget ToPerf(const Target& t) {
  switch (t.kind) {
    case Target::Kind::kTask:
      return PerfTarget::Thread(t.tid);
    case Target::Kind::kTaskOnCpu:
      return PerfTarget::ThreadOnCpu(t.tid, static_cast<int>(t.cpu));
    case Target::Kind::kCpu:
      break;
  }
  return PerfTarget::Cpu(static_cast<int>(t.cpu));
}

// Opens `weight` breakpoints for one reservation: all or none, as the
// engine accounts a weight-w reservation as w registers.
bool KernelReserve(const Request& r, std::vector<PerfBreakpoint>* out, std::string* err) {
  std::vector<PerfBreakpoint> got;
  for (unsigned i = 0; i < r.weight; ++i) {
    auto bp = PerfBreakpoint::Open(Spec(), ToPerf(r.target));
    if (!bp) {
      if (!bp.error().Is(ENOSPC)) *err = bp.error().message;
      return false;  // `got` closes what was opened
    }
    got.push_back(std::move(bp.value()));
  }
  *out = std::move(got);
  return true;
}

TEST(KernelOracle, EngineDecidesAsTheLiveKernel) {
  ASSERT_EQ(geteuid(), 0u) << "CPU-target breakpoints need root";
  const arch::HostCapabilities host = arch::DiscoverHost();
  ASSERT_TRUE(host.error.empty()) << host.error;
  ASSERT_GT(host.cpus, 0u);
  const arch::SlotPool* pool = host.PoolFor(arch::SlotType::kData);
  ASSERT_NE(pool, nullptr);
  const unsigned slots = pool->slots;

  // Baseline: nothing outside this test may hold slots, or the kernel's
  // decisions would not be this engine's to predict.
  for (unsigned c = 0; c < host.cpus; ++c) {
    std::vector<PerfBreakpoint> probe;
    for (unsigned i = 0; i <= slots; ++i) {
      auto bp = PerfBreakpoint::Open(Spec(), PerfTarget::Cpu(static_cast<int>(c)));
      if (!bp) {
        ASSERT_TRUE(bp.error().Is(ENOSPC)) << bp.error().message;
        break;
      }
      probe.push_back(std::move(bp.value()));
    }
    ASSERT_EQ(probe.size(), slots)
        << "cpu " << c << " has only " << probe.size() << " of " << slots
        << " breakpoint slots free: something outside this test holds them (a debugger, perf, "
           "a running hwwatchd); stop it and rerun";
  }

  auto helper = arch::ChildProcess::Fork(HelperBody, nullptr);
  ASSERT_TRUE(helper) << helper.error().message;
  std::vector<pid_t> tids;
  for (int i = 0; i < 500 && tids.size() < kHelperThreads + 1; ++i) {
    tids = Threads(helper->pid());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(tids.size(), size_t{kHelperThreads + 1});

  Engine e(Config{host.cpus, host.pools, LockMode::kSharded, 0});
  const char* env = std::getenv("HWWATCH_ORACLE_OPS");
  const uint64_t ops = env ? std::strtoull(env, nullptr, 10) : 10000;
  std::mt19937 rng(20261125);
  auto pick = [&](unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(rng); };

  struct Live {
    ReservationId id;
    Request r;
    std::vector<PerfBreakpoint> fds;
  };
  std::vector<Live> live;
  uint64_t admitted = 0, refused = 0, disagreements = 0;
  for (uint64_t step = 0; step < ops; ++step) {
    if (live.empty() || pick(100) < 55) {
      Request r;
      r.type = arch::SlotType::kData;
      r.weight = pick(4) == 0 ? 2 : 1;
      const pid_t tid = tids[pick(tids.size())];
      switch (pick(3)) {
        case 0:
          r.target = Target::Task(tid);
          break;
        case 1:
          r.target = Target::TaskOnCpu(tid, pick(host.cpus));
          break;
        default:
          r.target = Target::Cpu(pick(host.cpus));
      }
      std::vector<PerfBreakpoint> fds;
      std::string err;
      const bool kernel = KernelReserve(r, &fds, &err);
      ASSERT_TRUE(err.empty()) << "step " << step << ": " << err;
      Admission a = e.Reserve(r);
      if (a.ok() != kernel) {
        ++disagreements;
        ADD_FAILURE() << "step " << step << ": kernel " << (kernel ? "admits" : "refuses")
                      << ", engine " << (a ? "admits" : a.refusal().Explain());
        if (a) e.Release(a.id());
        continue;
      }
      if (a) {
        live.push_back({a.id(), r, std::move(fds)});
        ++admitted;
      } else {
        ++refused;
      }
    } else {
      const unsigned i = pick(live.size());
      ASSERT_TRUE(e.Release(live[i].id));
      live[i] = std::move(live.back());
      live.pop_back();  // closes the kernel's breakpoints
    }
  }
  std::printf("kernel oracle: %llu operations, %llu admitted, %llu refused, %llu disagreements\n",
              static_cast<unsigned long long>(ops), static_cast<unsigned long long>(admitted),
              static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(disagreements));
  EXPECT_EQ(disagreements, 0u);
  // Both decisions were exercised.
  EXPECT_GT(admitted, ops / 10);
  EXPECT_GT(refused, ops / 20);
  live.clear();
  helper->KillAndReap();
}

}  // namespace
}  // namespace hwwatch::engine
