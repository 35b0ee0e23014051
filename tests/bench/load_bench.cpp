// hwwatch-bench load: N concurrent clients, each reserving and releasing
// watches on shared threads for S seconds, against a hwwatchd it starts.
// Reports Reserve latency percentiles, throughput, and every answer other
// than success or an honest RESOURCE_EXHAUSTED (which it counts as errors).
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "tests/bench/json.h"
#include "tests/bench/spawned_daemon.h"

namespace hwwatch::bench {
namespace {

namespace v1 = ::hwwatch::v1;
using Clock = std::chrono::steady_clock;

struct LoadParams {
  unsigned clients = 64;
  double seconds = 60;
  unsigned targets = 16;
  std::string daemon;
  bool json = false;
};

// Threads of this process that only wait: the watched targets.
class Waiters {
 public:
  explicit Waiters(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        {
          std::lock_guard lock(mu_);
          tids_.push_back(static_cast<pid_t>(syscall(SYS_gettid)));
        }
        std::unique_lock lock(mu_);
        done_cv_.wait(lock, [&] { return done_; });
      });
    }
    for (;;) {
      std::lock_guard lock(mu_);
      if (tids_.size() == n) break;
    }
  }
  ~Waiters() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    done_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  const std::vector<pid_t>& tids() const { return tids_; }

 private:
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::vector<pid_t> tids_;
  std::vector<std::thread> threads_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

int Run(const LoadParams& p) {
  std::string err;
  std::string binary = p.daemon;
  if (binary.empty()) {
    char self[4096] = {};
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    std::string dir(self, n > 0 ? static_cast<size_t>(n) : 0);
    binary = dir.substr(0, dir.rfind('/')) + "/hwwatchd";
  }
  auto d = SpawnedDaemon::Start(binary, "", std::chrono::seconds(10), &err);
  if (!d) {
    std::fprintf(stderr, "hwwatch-bench load: %s\n", err.c_str());
    return 1;
  }
  Waiters targets(p.targets);
  std::atomic<uint64_t> ok{0}, exhausted{0}, errors{0};
  std::vector<std::vector<double>> latencies(p.clients);
  std::string first_error;
  std::mutex err_mu;
  const Clock::time_point end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(p.seconds));
  std::vector<std::thread> threads;
  for (unsigned c = 0; c < p.clients; ++c) {
    threads.emplace_back([&, c] {
      auto conn = client::Client::Connect(d->socket());
      if (!conn) {
        ++errors;
        return;
      }
      client::Client& cl = *conn.value();
      cl.set_call_timeout(std::chrono::seconds(30));
      std::mt19937 rng(c);
      std::vector<double>& lat = latencies[c];
      while (Clock::now() < end) {
        v1::ReserveRequest req;
        req.mutable_target()->set_tid(targets.tids()[rng() % targets.tids().size()]);
        req.mutable_watch()->set_address(0x100000 + 0x40 * uint64_t{c});
        req.mutable_watch()->set_length(8);
        req.mutable_watch()->set_access(v1::ACCESS_WRITE);
        const auto t0 = Clock::now();
        auto r = cl.Reserve(req);
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        if (r) {
          ++ok;
          if (!cl.Release(r->id())) ++errors;
        } else if (r.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++exhausted;
        } else {
          ++errors;
          std::lock_guard lock(err_mu);
          if (first_error.empty()) first_error = r.error().ToString();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  const double p50 = Percentile(all, 0.50), p99 = Percentile(all, 0.99);
  const double max = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  const double rate = static_cast<double>(all.size()) / p.seconds;
  if (p.json) {
    Json j;
    Put(j, "clients", p.clients);
    Put(j, "seconds", p.seconds);
    Put(j, "reserves", all.size());
    Put(j, "admitted", ok.load());
    Put(j, "resource_exhausted", exhausted.load());
    Put(j, "errors", errors.load());
    Put(j, "reserve_p50_us", p50);
    Put(j, "reserve_p99_us", p99);
    Put(j, "reserve_max_us", max);
    Put(j, "reserves_per_s", rate);
    std::fputs(ToJson(j).c_str(), stdout);
  } else {
    std::printf("%u clients for %.0f s on %u threads: %zu Reserve calls (%.0f/s)\n", p.clients,
                p.seconds, p.targets, all.size(), rate);
    std::printf("  admitted %llu, RESOURCE_EXHAUSTED %llu, other errors %llu\n",
                static_cast<unsigned long long>(ok.load()),
                static_cast<unsigned long long>(exhausted.load()),
                static_cast<unsigned long long>(errors.load()));
    std::printf("  Reserve latency p50 %.0f us, p99 %.0f us, max %.0f us\n", p50, p99, max);
    if (!first_error.empty()) std::printf("  first error: %s\n", first_error.c_str());
  }
  return errors.load() == 0 ? 0 : 1;
}

}  // namespace

void AddLoadCommand(CLI::App& app, std::function<int()>* run) {
  static LoadParams p;
  CLI::App* cmd = app.add_subcommand(
      "load",
      "Concurrent clients reserving and releasing for a while: Reserve latency p50/p99 and "
      "every error that is not an honest RESOURCE_EXHAUSTED (exit 1 if any)");
  cmd->add_option("--clients", p.clients, "Concurrent clients")->capture_default_str();
  cmd->add_option("--seconds", p.seconds, "How long")->capture_default_str();
  cmd->add_option("--targets", p.targets, "Threads the watches go on")->capture_default_str();
  cmd->add_option("--daemon", p.daemon, "hwwatchd to start (default: beside this program)");
  cmd->add_flag("--json", p.json, "One JSON object");
  cmd->footer("Example:\n  hwwatch-bench load --clients 64 --seconds 60");
  cmd->callback([run] { *run = [] { return Run(p); }; });
}

}  // namespace hwwatch::bench
