#include "tests/bench/engine_bench.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "daemon/engine/constraints.h"
#include "tests/bench/json.h"

namespace hwwatch::bench {

namespace {

using Clock = std::chrono::steady_clock;
using engine::Engine;
using engine::LockMode;
using engine::Target;

struct Params {
  std::string lock = "sharded";
  std::string mode = "threads";
  unsigned cpus = 256;
  unsigned tasks = 64;    // perf bench -p: groups running in parallel
  unsigned threads = 64;  // perf bench -t: threads per group per round
  unsigned bps = 4;       // perf bench -b: watches each thread holds
  unsigned rounds = 10;   // perf bench -r
  unsigned iterations = 200000;
  unsigned preload = 0;
  unsigned repeat = 3;
  bool json = false;
  bool suite = false;
};

engine::Config MakeConfig(const Params& p, LockMode lock) {
  return engine::Config{
      p.cpus, {arch::SlotPool{{arch::SlotType::kData, arch::SlotType::kInst}, 4}}, lock, 0};
}

void Preload(Engine& e, unsigned n) {
  // Tasks far above any real tid used by the measured threads.
  for (unsigned i = 0; i < n; ++i) {
    (void)e.Reserve({Target::Task(static_cast<pid_t>(4000000 + i)), arch::SlotType::kData, 1});
  }
}

// perf bench breakpoint thread: `tasks` groups in parallel; each runs
// `rounds` rounds of creating `threads` threads that each reserve `bps`
// watches on themselves (as inherited breakpoints would be), wait for the
// round's other threads, release and exit. One op = one thread created and
// exited. Returns microseconds per op.
double RunThreads(const Params& p, LockMode lock) {
  Engine e(MakeConfig(p, lock));
  Preload(e, p.preload);
  auto group = [&] {
    for (unsigned r = 0; r < p.rounds; ++r) {
      std::barrier<> round(p.threads);
      std::vector<std::thread> ts;
      ts.reserve(p.threads);
      for (unsigned t = 0; t < p.threads; ++t) {
        ts.emplace_back([&] {
          const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
          engine::ReservationId ids[16];
          const unsigned n = std::min(p.bps, 16u);
          for (unsigned b = 0; b < n; ++b) {
            auto a = e.Reserve({Target::Task(tid), arch::SlotType::kData, 1});
            ids[b] = a ? a.id() : 0;
          }
          round.arrive_and_wait();
          for (unsigned b = 0; b < n; ++b) {
            if (ids[b]) e.Release(ids[b]);
          }
        });
      }
      for (auto& t : ts) t.join();
    }
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> groups;
  for (unsigned g = 0; g < p.tasks; ++g) groups.emplace_back(group);
  for (auto& g : groups) g.join();
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  return us / (double(p.tasks) * p.threads * p.rounds);
}

// Engine operations without thread creation: `threads` workers, each on its
// own task, `iterations` times reserve `bps` watches and release them. One
// op = one reserve + release of one watch. Returns microseconds per op.
double RunOps(const Params& p, LockMode lock) {
  Engine e(MakeConfig(p, lock));
  Preload(e, p.preload);
  std::barrier<> start(p.threads + 1);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < p.threads; ++t) {
    ts.emplace_back([&, t] {
      const pid_t tid = static_cast<pid_t>(1000 + t);
      std::vector<engine::ReservationId> ids(p.bps);
      start.arrive_and_wait();
      for (unsigned i = 0; i < p.iterations; ++i) {
        for (auto& id : ids) {
          auto a = e.Reserve({Target::Task(tid), arch::SlotType::kData, 1});
          id = a ? a.id() : 0;
        }
        for (auto id : ids) {
          if (id) e.Release(id);
        }
      }
    });
  }
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  for (auto& t : ts) t.join();
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  return us / (double(p.iterations) * p.bps * p.threads) * p.threads;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs each configuration `repeat` times, interleaved, so that noise on
// this shared machine hits both sides of a ratio alike.
std::vector<double> Interleaved(const Params& p, const std::vector<std::function<double()>>& fs) {
  std::vector<std::vector<double>> runs(fs.size());
  for (unsigned r = 0; r < std::max(1u, p.repeat); ++r) {
    for (size_t i = 0; i < fs.size(); ++i) runs[i].push_back(fs[i]());
  }
  std::vector<double> out;
  for (auto& v : runs) out.push_back(Median(v));
  return out;
}

int RunSuite(const Params& base) {
  // P1: perf bench's configuration on 256 simulated CPUs.
  Params p1 = base;
  p1.mode = "threads";
  p1.cpus = 256;
  p1.tasks = 64;
  p1.threads = 64;
  p1.bps = 4;
  auto r1 = Interleaved(p1, {[&] { return RunThreads(p1, LockMode::kSharded); },
                             [&] { return RunThreads(p1, LockMode::kNone); },
                             [&] { return RunThreads(p1, LockMode::kGlobal); }});
  // P2: two workers on this host's two cores, engine ops only.
  Params p2 = base;
  p2.cpus = 256;
  p2.threads = 2;
  p2.bps = 4;
  auto r2 = Interleaved(p2, {[&] { return RunOps(p2, LockMode::kSharded); },
                             [&] { return RunOps(p2, LockMode::kGlobal); }});
  // P3: thread-target cost with 256 CPUs vs 1.
  Params p3 = base;
  p3.threads = 1;
  p3.bps = 4;
  Params p3a = p3, p3b = p3;
  p3a.cpus = 256;
  p3b.cpus = 1;
  auto r3 = Interleaved(p3, {[&] { return RunOps(p3a, LockMode::kSharded); },
                             [&] { return RunOps(p3b, LockMode::kSharded); }});
  // P4: per-op cost with 100k tasks already holding watches vs 10.
  Params p4 = base;
  p4.threads = 1;
  p4.cpus = 256;
  Params p4a = p4, p4b = p4;
  p4a.preload = 100000;
  p4b.preload = 10;
  auto r4 = Interleaved(p4, {[&] { return RunOps(p4a, LockMode::kSharded); },
                             [&] { return RunOps(p4b, LockMode::kSharded); }});
  const double P1 = r1[0] / r1[1], P2 = r2[1] / r2[0], P3 = r3[0] / r3[1], P4 = r4[0] / r4[1];
  if (base.json) {
    Json j;
    Put(j, "bench", "engine-suite");
    Put(j, "repeat", base.repeat);
    Json& t1 = Child(j, "p1_threads_us_per_op");
    Put(t1, "sharded", r1[0]);
    Put(t1, "none", r1[1]);
    Put(t1, "global", r1[2]);
    Put(j, "p1_sharded_over_none", P1);
    Json& t2 = Child(j, "p2_ops_us_per_op");
    Put(t2, "sharded", r2[0]);
    Put(t2, "global", r2[1]);
    Put(j, "p2_sharded_throughput_over_global", P2);
    Json& t3 = Child(j, "p3_us_per_op");
    Put(t3, "cpus256", r3[0]);
    Put(t3, "cpus1", r3[1]);
    Put(j, "p3_cpus256_over_cpus1", P3);
    Json& t4 = Child(j, "p4_us_per_op");
    Put(t4, "tasks100k", r4[0]);
    Put(t4, "tasks10", r4[1]);
    Put(j, "p4_100k_over_10", P4);
    std::fputs(ToJson(j).c_str(), stdout);
  } else {
    std::printf("goal                                         measured   target\n");
    std::printf("P1 threads sharded/none (256 cpus,64x64,b4)  %8.3f   <= 1.05\n", P1);
    std::printf("P2 ops throughput sharded/global, 2 workers  %8.3f   >= 1.7\n", P2);
    std::printf("P3 task op cost 256 cpus / 1 cpu             %8.3f   <= 1.2\n", P3);
    std::printf("P4 op cost 100k tasks / 10 tasks             %8.3f   <= 1.3\n", P4);
  }
  return 0;
}

int Run(const Params& p) {
  if (p.suite) return RunSuite(p);
  auto lock = engine::ParseLockMode(p.lock);
  if (!lock) {
    std::fprintf(stderr, "hwwatch-bench: --lock must be sharded, global or none\n");
    return 2;
  }
  std::vector<double> runs;
  for (unsigned r = 0; r < std::max(1u, p.repeat); ++r) {
    runs.push_back(p.mode == "ops" ? RunOps(p, *lock) : RunThreads(p, *lock));
  }
  const double us = Median(runs);
  const double per_cpu = p.mode == "ops" ? us : us * p.tasks;
  if (p.json) {
    Json j;
    Put(j, "bench", "engine");
    Put(j, "mode", p.mode);
    Put(j, "lock", p.lock);
    Put(j, "cpus", p.cpus);
    Put(j, "tasks", p.tasks);
    Put(j, "threads", p.threads);
    Put(j, "bps", p.bps);
    Put(j, "rounds", p.rounds);
    Put(j, "iterations", p.iterations);
    Put(j, "preload_tasks", p.preload);
    Put(j, "repeat", p.repeat);
    Put(j, "us_per_op", us);
    Put(j, "us_per_op_per_cpu", per_cpu);
    Put(j, "ops_per_s", 1e6 / us);
    std::fputs(ToJson(j).c_str(), stdout);
  } else {
    std::printf("%.4f usecs/op\n%.4f usecs/op/cpu\n", us, per_cpu);
  }
  return 0;
}

}  // namespace

void AddEngineCommand(CLI::App& app, std::function<int()>* run) {
  static Params p;
  CLI::App* cmd = app.add_subcommand(
      "engine",
      "The constraint engine alone. --mode threads is perf bench breakpoint thread: --tasks groups "
      "in parallel, each --rounds rounds of creating --threads threads that reserve --bps watches "
      "on themselves, wait for each other, release and exit (one op = one thread created and "
      "exited). --mode ops: --threads workers, each on its own task, reserve --bps watches and "
      "release them, --iterations times (one op = one reserve + release).");
  cmd->add_option("--lock", p.lock, "sharded, global or none")->capture_default_str();
  cmd->add_option("--mode", p.mode, "threads or ops")
      ->check(CLI::IsMember({"threads", "ops"}))
      ->capture_default_str();
  cmd->add_option("--cpus", p.cpus, "Simulated CPUs")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
  cmd->add_option("--tasks", p.tasks, "Groups in parallel (perf bench -p)")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  cmd->add_option("--threads", p.threads,
                  "Threads per group per round (-t), or workers in ops mode")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  cmd->add_option("--bps", p.bps, "Watches per thread (-b)")
      ->check(CLI::Range(0u, 16u))
      ->capture_default_str();
  cmd->add_option("--rounds", p.rounds, "Rounds (-r)")
      ->check(CLI::Range(1u, 100000u))
      ->capture_default_str();
  cmd->add_option("--iterations", p.iterations, "ops mode: iterations per worker")
      ->capture_default_str();
  cmd->add_option("--preload-tasks", p.preload, "Tasks holding one watch before measuring")
      ->capture_default_str();
  cmd->add_option("--repeat", p.repeat, "Runs; the median is reported")->capture_default_str();
  cmd->add_flag("--suite", p.suite, "Measure the P1-P4 ratios in one run");
  cmd->add_flag("--json", p.json, "Print one JSON object");
  cmd->footer(
      "Examples:\n  hwwatch-bench engine --lock sharded --cpus 256 --tasks 64 --threads 64 --bps 4 "
      "--json\n  hwwatch-bench engine --mode ops --lock global --threads 2 --json\n"
      "  hwwatch-bench engine --suite");
  cmd->callback([run] { *run = [] { return Run(p); }; });
}

}  // namespace hwwatch::bench
