#include "tests/bench/rpc_bench.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "arch/perf_event.h"
#include "client/client.h"
#include "tests/bench/json.h"
#include "tests/bench/process_bench.h"
#include "tests/bench/spawned_daemon.h"

namespace hwwatch::bench {

namespace {

namespace v1 = ::hwwatch::v1;
using Clock = std::chrono::steady_clock;

struct Params {
  std::string daemon;  // empty: hwwatchd beside this executable
  std::string socket;  // empty: a fresh temp dir
  unsigned iterations = 2000;
  std::vector<unsigned> clients = {1, 8, 64};
  unsigned ops = 2000;
  unsigned p7_threads = 250;
  unsigned p9_threads = 200;
  unsigned repeat = 3;
  bool json = false;
  bool suite = false;
};

// The full sizes of --suite, for every size not given explicitly.
constexpr unsigned kSuiteIterations = 10000;
constexpr unsigned kSuiteOps = 10000;
constexpr unsigned kSuiteP7Threads = 2500;
constexpr unsigned kSuiteP9Threads = 1000;
constexpr unsigned kSuiteRepeat = 5;

// Four distinct 8-aligned words of this process: one thread may hold a
// watch on each (x86 has four debug registers per thread).
alignas(64) uint64_t g_watched[4];

constexpr auto kCallTimeout = std::chrono::seconds(10);
constexpr size_t kParkedStack = 64 * 1024;
constexpr const char* kHealthMethod = "/grpc.health.v1.Health/Check";
constexpr const char* kHealthName = "grpc.health.v1.Health/Check";
constexpr const char* kStatsName = "hwwatch.v1.WatchpointManager/Stats";

uint64_t WatchedAddress(unsigned word) { return reinterpret_cast<uint64_t>(&g_watched[word % 4]); }

// A write watch on one 8-byte word, on one thread, through perf.
v1::ReserveRequest WatchRequest(pid_t tid, unsigned word) {
  v1::ReserveRequest r;
  r.mutable_target()->set_tid(tid);
  v1::Watch* w = r.mutable_watch();
  w->set_address(WatchedAddress(word));
  w->set_length(8);
  w->set_access(v1::ACCESS_WRITE);
  r.set_backend(v1::BACKEND_PERF);
  return r;
}

void RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Threads of this process that only wait until destruction: the targets of
// thread watches. Small stacks, so thousands fit.
class ParkedThreads {
 public:
  explicit ParkedThreads(unsigned n) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kParkedStack);
    handles_.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      pthread_t t;
      if (pthread_create(&t, &attr, &ParkedThreads::Park, this) != 0) break;
      handles_.push_back(t);
    }
    pthread_attr_destroy(&attr);
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return tids_.size() == handles_.size(); });
  }
  ParkedThreads(const ParkedThreads&) = delete;
  ParkedThreads& operator=(const ParkedThreads&) = delete;
  ~ParkedThreads() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (pthread_t t : handles_) pthread_join(t, nullptr);
  }

  // Their thread ids (fewer than asked for when pthread_create failed).
  const std::vector<pid_t>& tids() const { return tids_; }

 private:
  static void* Park(void* arg) {
    auto* self = static_cast<ParkedThreads*>(arg);
    const auto tid = static_cast<pid_t>(syscall(SYS_gettid));
    std::unique_lock lock(self->mu_);
    self->tids_.push_back(tid);
    self->ready_.notify_one();
    self->wake_.wait(lock, [&] { return self->stop_; });
    return nullptr;
  }

  std::mutex mu_;
  std::condition_variable ready_;  // the constructor waits for every tid
  std::condition_variable wake_;   // the threads wait for stop_
  bool stop_ = false;
  std::vector<pid_t> tids_;
  std::vector<pthread_t> handles_;
};

// One connection to the daemon (channel arguments as client::Client uses),
// carrying both the WatchpointManager calls and the empty RPC, so that
// both sides of P5 use the same socket and the same connection.
class Connection {
 public:
  explicit Connection(const std::string& socket) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channel_ =
        grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args);
    if (!channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(3))) {
      throw std::runtime_error("cannot connect to " + socket);
    }
    stub_ = v1::WatchpointManager::NewStub(channel_);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    grpc::Slice empty{std::string()};
    health_request_ = grpc::ByteBuffer(&empty, 1);
    // The health service answers SERVING: field 1, varint 1.
    std::string response;
    use_health_ = CallHealth(&response) && response == std::string("\x08\x01", 2);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() {
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  const char* empty_rpc_name() const { return use_health_ ? kHealthName : kStatsName; }

  void Empty() {
    if (use_health_) {
      if (!CallHealth(nullptr)) throw std::runtime_error("the health check failed");
      return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::StatsResponse resp;
    Check(stub_->Stats(&ctx, v1::StatsRequest(), &resp), "Stats");
  }

  // The reservation's id; nullopt when refused for lack of a slot (other
  // holders of debug registers on this shared host).
  std::optional<uint64_t> Reserve(const v1::ReserveRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::ReserveResponse resp;
    const grpc::Status s = stub_->Reserve(&ctx, req, &resp);
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) return std::nullopt;
    Check(s, "Reserve");
    return resp.reservation().id();
  }

  void Release(uint64_t id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    v1::ReleaseRequest req;
    req.set_id(id);
    v1::ReleaseResponse resp;
    Check(stub_->Release(&ctx, req, &resp), "Release");
  }

 private:
  static void Check(const grpc::Status& s, const char* what) {
    if (!s.ok()) {
      throw std::runtime_error(std::string(what) +
                               " failed: " + client::Error::FromStatus(s).ToString());
    }
  }

  // grpc.health.v1.Health/Check with an empty HealthCheckRequest (the
  // server's overall status), through a generic stub: Debian's grpc++ has
  // no generated client for it.
  bool CallHealth(std::string* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    grpc::ByteBuffer resp;
    grpc::Status status;
    auto call = generic_->PrepareUnaryCall(&ctx, kHealthMethod, health_request_, &cq_);
    call->StartCall();
    call->Finish(&resp, &status, this);
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok) || !ok || !status.ok()) return false;
    if (response) {
      std::vector<grpc::Slice> slices;
      if (!resp.Dump(&slices).ok()) return false;
      response->clear();
      for (const auto& s : slices) {
        response->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return true;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WatchpointManager::Stub> stub_;
  std::unique_ptr<grpc::GenericStub> generic_;
  grpc::CompletionQueue cq_;
  grpc::ByteBuffer health_request_;
  bool use_health_ = false;
};

// Mean microseconds of `n` successful calls of `f`. A call that returns
// false was refused a slot: it is not counted but retried after a pause, so
// that debug registers held by others on this shared host do not fail the
// run; refusals are counted in `refused`. Gives up after n + 1000 of them.
template <class F>
double MeanUs(unsigned n, F&& f, uint64_t* refused) {
  double total = 0;
  uint64_t refusals = 0;
  for (unsigned done = 0; done < n;) {
    const auto t0 = Clock::now();
    const bool ok = f();
    const auto t1 = Clock::now();
    if (ok) {
      total += std::chrono::duration<double, std::micro>(t1 - t0).count();
      ++done;
      continue;
    }
    if (++refusals > n + 1000ull) {
      throw std::runtime_error("refused a slot " + std::to_string(refusals) +
                               " times: debug registers are held outside this bench");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  *refused += refusals;
  return total / n;
}

struct Latency {
  std::string empty_rpc;
  double reserve_release_us = 0;  // samples delivery (the default)
  double count_pair_us = 0;       // the same pair with DELIVERY_COUNT: no capture set up
  double empty_us = 0;
  double direct_us = 0;  // perf_event_open + close + one empty RPC
  uint64_t reserve_refused = 0;
  uint64_t direct_refused = 0;
};

// P5 and P6: four sides on one connection, interleaved (below) so that
// noise on this shared machine hits every side of a ratio alike.
Latency MeasureLatency(const Params& p, const std::string& socket) {
  ParkedThreads target(1);
  if (target.tids().empty()) throw std::runtime_error("cannot create a target thread");
  const pid_t tid = target.tids()[0];
  Connection conn(socket);
  const v1::ReserveRequest req = WatchRequest(tid, 0);
  v1::ReserveRequest count_req = req;
  count_req.set_delivery(v1::DELIVERY_COUNT);
  const arch::BreakpointSpec spec{WatchedAddress(0), 8, arch::Access::kWrite};

  auto pair = [&](const v1::ReserveRequest& r) {
    auto id = conn.Reserve(r);
    if (!id) return false;
    conn.Release(*id);
    return true;
  };
  auto reserve_release = [&] { return pair(req); };
  auto count_pair = [&] { return pair(count_req); };
  auto empty = [&] {
    conn.Empty();
    return true;
  };
  auto direct = [&] {
    {
      auto bp = arch::PerfBreakpoint::Open(spec, arch::PerfTarget::Thread(tid));
      if (!bp && bp.error().Is(ENOSPC)) return false;
      if (!bp) throw std::runtime_error("perf_event_open: " + bp.error().message);
    }  // closed here
    conn.Empty();
    return true;
  };
  Latency l;
  l.empty_rpc = conn.empty_rpc_name();
  const unsigned warmup = std::min(p.iterations, 100u);
  uint64_t ignored = 0;
  MeanUs(warmup, reserve_release, &ignored);
  MeanUs(warmup, count_pair, &ignored);
  MeanUs(warmup, empty, &ignored);
  MeanUs(warmup, direct, &ignored);

  // Each side runs --iterations x --repeat calls in chunks of at most 100,
  // the four sides taking turns chunk by chunk; a side's figure is the
  // median of its chunks' means. A burst of load from others on this
  // shared machine then spoils a few chunks of every side, not one side's
  // whole loop.
  const unsigned chunk = std::min(p.iterations, 100u);
  const unsigned chunks = std::max(1u, p.iterations * std::max(1u, p.repeat) / chunk);
  std::vector<double> rr, cp, em, di;
  for (unsigned c = 0; c < chunks; ++c) {
    rr.push_back(MeanUs(chunk, reserve_release, &l.reserve_refused));
    cp.push_back(MeanUs(chunk, count_pair, &l.reserve_refused));
    em.push_back(MeanUs(chunk, empty, &ignored));
    di.push_back(MeanUs(chunk, direct, &l.direct_refused));
  }
  l.reserve_release_us = Median(rr);
  l.count_pair_us = Median(cp);
  l.empty_us = Median(em);
  l.direct_us = Median(di);
  return l;
}

struct Footprint {
  unsigned threads = 0;
  unsigned reservations = 0;
  unsigned refused = 0;
  unsigned errors = 0;
  double rss_mib = 0;
  double baseline_rss_mib = 0;
};

// P7: the daemon's resident memory while it holds 4 watches on each of
// `p7_threads` threads of this process.
Footprint MeasureFootprint(const Params& p, const SpawnedDaemon& d) {
  Footprint f;
  ParkedThreads threads(p.p7_threads);
  f.threads = static_cast<unsigned>(threads.tids().size());
  if (f.threads < p.p7_threads) {
    std::fprintf(stderr, "hwwatch-bench rpc: only %u of %u P7 threads could be created\n",
                 f.threads, p.p7_threads);
  }
  auto c = client::Client::Connect(d.socket());
  if (!c) throw std::runtime_error(c.error().ToString());
  client::Client& client = *c.value();
  f.baseline_rss_mib = ReadRssKiB(d.pid()) / 1024.0;
  std::vector<uint64_t> ids;
  ids.reserve(4 * size_t(f.threads));
  for (pid_t tid : threads.tids()) {
    for (unsigned w = 0; w < 4; ++w) {
      auto r = client.Reserve(WatchRequest(tid, w));
      if (r) {
        ids.push_back(r->id());
      } else if (r.error().code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++f.refused;
      } else if (++f.errors == 1) {
        std::fprintf(stderr, "hwwatch-bench rpc: P7 reserve on thread %d: %s\n", tid,
                     r.error().ToString().c_str());
      }
    }
  }
  f.reservations = static_cast<unsigned>(ids.size());
  f.rss_mib = ReadRssKiB(d.pid()) / 1024.0;
  for (uint64_t id : ids) {
    if (!client.Release(id) && ++f.errors == 1) {
      std::fprintf(stderr, "hwwatch-bench rpc: P7 release of %llu failed\n",
                   static_cast<unsigned long long>(id));
    }
  }
  return f;
}

struct Throughput {
  unsigned clients = 0;
  double ops_per_s = 0;
  uint64_t failed = 0;
};

// `clients` connections, each reserving and releasing a watch on its own
// thread; `ops` pairs in all. Returns successful pairs per second.
double MeasureThroughput(const std::string& socket, unsigned clients, unsigned ops,
                         uint64_t* failed) {
  ParkedThreads targets(clients);
  if (targets.tids().size() < clients) throw std::runtime_error("cannot create target threads");
  std::vector<std::unique_ptr<client::Client>> conns;
  for (unsigned i = 0; i < clients; ++i) {
    auto c = client::Client::Connect(socket);
    if (!c) throw std::runtime_error(c.error().ToString());
    conns.push_back(std::move(c.value()));
  }
  std::barrier<> start(clients + 1);
  std::atomic<uint64_t> done{0}, bad{0};
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < clients; ++i) {
    const unsigned n = ops / clients + (i < ops % clients ? 1 : 0);
    workers.emplace_back([&, i, n] {
      const v1::ReserveRequest req = WatchRequest(targets.tids()[i], 0);
      client::Client& c = *conns[i];
      start.arrive_and_wait();
      uint64_t ok = 0, fail = 0;
      for (unsigned k = 0; k < n; ++k) {
        auto r = c.Reserve(req);
        if (r && c.Release(r->id())) {
          ++ok;
        } else {
          ++fail;
        }
      }
      done += ok;
      bad += fail;
    });
  }
  start.arrive_and_wait();
  const auto t0 = Clock::now();
  for (auto& w : workers) w.join();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  *failed += bad.load();
  return double(done.load()) / s;
}

std::vector<Throughput> MeasureThroughputs(const Params& p, const std::string& socket) {
  std::vector<Throughput> out;
  std::vector<std::vector<double>> runs(p.clients.size());
  for (size_t i = 0; i < p.clients.size(); ++i) out.push_back({p.clients[i], 0, 0});
  for (unsigned r = 0; r < std::max(1u, p.repeat); ++r) {
    for (size_t i = 0; i < p.clients.size(); ++i) {
      runs[i].push_back(MeasureThroughput(socket, p.clients[i], p.ops, &out[i].failed));
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].ops_per_s = Median(runs[i]);
  return out;
}

double Ratio(double a, double b) { return a > 0 && b > 0 ? a / b : 0; }

// The "p9" object: numbers are null when not measured, and the reason is
// given ("refused", "ptrace_not_measured", "error").
void P9Json(Json& j, const ProcessTargetFigures& x) {
  Put(j, "threads", x.threads);
  Put(j, "tasks", x.tasks);
  PutMeasured(j, "daemon_count_us", x.daemon_count_us);
  PutMeasured(j, "daemon_samples_us", x.daemon_samples_us);
  PutMeasured(j, "direct_us", x.direct_us);
  PutMeasured(j, "ratio_count", Ratio(x.daemon_count_us, x.direct_us));
  PutMeasured(j, "ratio_samples", Ratio(x.daemon_samples_us, x.direct_us));
  PutMeasured(j, "direct_local_us", x.direct_local_us);
  PutMeasured(j, "ratio_count_local", Ratio(x.daemon_count_us, x.direct_local_us));
  PutMeasured(j, "ratio_samples_local", Ratio(x.daemon_samples_us, x.direct_local_us));
  PutMeasured(j, "daemon_ptrace_us", x.daemon_ptrace_us);
  PutMeasured(j, "daemon_ptrace_ratio", Ratio(x.daemon_ptrace_us, x.direct_us));
  PutMeasured(j, "ptrace_us", x.ptrace_us);
  PutMeasured(j, "ptrace_ratio", Ratio(x.ptrace_us, x.direct_us));
  PutMeasured(j, "daemon_ptrace_over_ptrace", Ratio(x.daemon_ptrace_us, x.ptrace_us));
  PutMeasured(j, "ptrace_held_us", x.ptrace_held_us);
  PutMeasured(j, "daemon_ptrace_over_ptrace_held", Ratio(x.daemon_ptrace_us, x.ptrace_held_us));
  Put(j, "refusals", x.refusals);
  if (!x.refused.empty()) Put(j, "refused", x.refused);
  if (!x.ptrace_not_measured.empty()) Put(j, "ptrace_not_measured", x.ptrace_not_measured);
  if (!x.error.empty()) Put(j, "error", x.error);
}

void Print(const Params& p, const std::string& daemon, const Latency& l, const Footprint& f,
           const std::vector<Throughput>& t, const ProcessTargetFigures& x) {
  const double p5 = l.reserve_release_us / l.empty_us;
  const double p6 = l.reserve_release_us / l.direct_us;
  // A Reserve+Release pair is two round trips against one on the other side
  // of P5 and P6; these secondary ratios put two there (same medians, no
  // extra loop).
  const double p5_per_rpc = p5 / 2;
  const double count_per_rpc = l.count_pair_us / l.empty_us / 2;  // the same, no capture
  const double p6_two = l.reserve_release_us / (l.direct_us + l.empty_us);
  if (p.json) {
    Json j;
    Put(j, "bench", "rpc");
    Put(j, "empty_rpc", l.empty_rpc);
    Put(j, "iterations", p.iterations);
    Put(j, "repeat", p.repeat);
    Json& j5 = Child(j, "p5");
    Put(j5, "reserve_release_us", l.reserve_release_us);
    Put(j5, "empty_us", l.empty_us);
    Put(j5, "ratio", p5);
    Put(j5, "ratio_per_rpc", p5_per_rpc);
    Put(j5, "count_pair_us", l.count_pair_us);
    Put(j5, "count_ratio_per_rpc", count_per_rpc);
    Put(j5, "refused", l.reserve_refused);
    Json& j6 = Child(j, "p6");
    Put(j6, "reserve_release_us", l.reserve_release_us);
    Put(j6, "direct_open_close_empty_us", l.direct_us);
    Put(j6, "ratio", p6);
    Put(j6, "ratio_vs_two_rpcs", p6_two);
    Put(j6, "direct_refused", l.direct_refused);
    Json& j7 = Child(j, "p7");
    Put(j7, "threads", f.threads);
    Put(j7, "reservations", f.reservations);
    Put(j7, "refused", f.refused);
    Put(j7, "errors", f.errors);
    Put(j7, "rss_mib", f.rss_mib);
    Put(j7, "baseline_rss_mib", f.baseline_rss_mib);
    for (const auto& x : t) {
      Json& jt = Append(j, "throughput");
      Put(jt, "clients", x.clients);
      Put(jt, "ops", p.ops);
      Put(jt, "ops_per_s", x.ops_per_s);
      Put(jt, "failed", x.failed);
    }
    P9Json(Child(j, "p9"), x);
    std::fputs(ToJson(j).c_str(), stdout);
    return;
  }
  std::printf(
      "hwwatchd %s; empty RPC %s; P5/P6: median of chunks of up to 100 calls, %u per side; others: "
      "median of %u runs\n",
      daemon.c_str(), l.empty_rpc.c_str(), p.iterations * std::max(1u, p.repeat), p.repeat);
  auto row = [](const std::string& label, double value, const char* target) {
    std::printf("%-56s %8.3f%s%s\n", label.c_str(), value, *target ? "   " : "", target);
  };
  auto us = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f us", v);
    return std::string(buf);
  };
  std::printf("%-56s %8s   %s\n", "goal", "measured", "target");
  row("P5 reserve+release " + us(l.reserve_release_us) + " / empty RPC " + us(l.empty_us), p5,
      "<= 1.3");
  row("   per round trip (the pair is two)", p5_per_rpc, "");
  row("   the same, counting delivery (no capture) " + us(l.count_pair_us), count_per_rpc, "");
  row("P6 reserve+release / perf open+close+empty " + us(l.direct_us), p6, "<= 1.2");
  row("   against perf open+close + two empty RPCs", p6_two, "");
  if (l.reserve_refused || l.direct_refused) {
    std::printf("   slots held elsewhere: %llu Reserve and %llu perf_event_open refusals retried\n",
                static_cast<unsigned long long>(l.reserve_refused),
                static_cast<unsigned long long>(l.direct_refused));
  }
  row("P7 daemon RSS (MiB), " + std::to_string(f.reservations) + " reservations", f.rss_mib,
      "<= 64");
  std::printf("   baseline RSS %.2f MiB; %u threads, %u refused, %u errors\n", f.baseline_rss_mib,
              f.threads, f.refused, f.errors);
  row("P9 pid watch, " + std::to_string(x.tasks) + " threads: pair " + us(x.daemon_count_us) +
          " / direct " + us(x.direct_us),
      Ratio(x.daemon_count_us, x.direct_us), "<= 1.5");
  row("   samples delivery " + us(x.daemon_samples_us) + " / direct",
      Ratio(x.daemon_samples_us, x.direct_us), "");
  row("   pair / direct from each task's CPU " + us(x.direct_local_us),
      Ratio(x.daemon_count_us, x.direct_local_us), "");
  row("   samples delivery / the same", Ratio(x.daemon_samples_us, x.direct_local_us), "");
  row("   ptrace backend through hwwatchd " + us(x.daemon_ptrace_us) + " / direct",
      Ratio(x.daemon_ptrace_us, x.direct_us), "");
  if (x.ptrace_not_measured.empty()) {
    row("   ptrace per thread, as a debugger " + us(x.ptrace_us) + " / direct",
        Ratio(x.ptrace_us, x.direct_us), "");
    row("   ptrace through hwwatchd / the debugger's", Ratio(x.daemon_ptrace_us, x.ptrace_us),
        "<= 1.5");
    row("   / a debugger holding it, two stops " + us(x.ptrace_held_us),
        Ratio(x.daemon_ptrace_us, x.ptrace_held_us), "");
  } else {
    std::printf("   ptrace figure not measured: %s\n", x.ptrace_not_measured.c_str());
  }
  if (x.refusals || !x.refused.empty()) {
    std::printf("   slots held elsewhere: %llu refusals retried%s%s\n",
                static_cast<unsigned long long>(x.refusals), x.refused.empty() ? "" : "; ",
                x.refused.c_str());
  }
  if (!x.error.empty()) std::printf("   P9 failed: %s\n", x.error.c_str());
  std::printf("throughput, reserve+release pairs/s (%u pairs per run):\n", p.ops);
  for (const auto& x : t) {
    std::printf("   %3u client(s)  %10.1f   (%llu failed)\n", x.clients, x.ops_per_s,
                static_cast<unsigned long long>(x.failed));
  }
}

int Run(Params p, const CLI::App& cmd) {
  if (p.suite) {
    if (!cmd.count("--iterations")) p.iterations = kSuiteIterations;
    if (!cmd.count("--ops")) p.ops = kSuiteOps;
    if (!cmd.count("--p7-threads")) p.p7_threads = kSuiteP7Threads;
    if (!cmd.count("--p9-threads")) p.p9_threads = kSuiteP9Threads;
    if (!cmd.count("--repeat")) p.repeat = kSuiteRepeat;
  }
  p.repeat = std::max(1u, p.repeat);
  RaiseFileLimit();
  const std::string daemon = p.daemon.empty() ? DaemonBesideSelf() : p.daemon;
  std::string err;
  auto d = SpawnedDaemon::Start(daemon, p.socket, std::chrono::seconds(10), &err);
  if (!d) {
    std::fprintf(stderr, "hwwatch-bench rpc: %s\n", err.c_str());
    return 1;
  }
  Latency l;
  Footprint f;
  std::vector<Throughput> t;
  ProcessTargetFigures x;
  try {
    l = MeasureLatency(p, d->socket());
    t = MeasureThroughputs(p, d->socket());
    f = MeasureFootprint(p, *d);
    // Reports its own failures: P5-P7 stand without it.
    x = MeasureProcessTarget(d->socket(), p.p9_threads, p.repeat);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hwwatch-bench rpc: %s\n", e.what());
    const std::string ended = d->Exited();
    if (!ended.empty()) std::fprintf(stderr, "hwwatch-bench rpc: %s\n", ended.c_str());
    d->Stop();
    return 1;
  }
  if (!x.error.empty()) {
    std::fprintf(stderr, "hwwatch-bench rpc: P9: %s\n", x.error.c_str());
    const std::string ended = d->Exited();
    if (!ended.empty()) std::fprintf(stderr, "hwwatch-bench rpc: %s\n", ended.c_str());
  }
  d->Stop();
  Print(p, daemon, l, f, t, x);
  return 0;
}

}  // namespace

void AddRpcCommand(CLI::App& app, std::function<int()>* run) {
  static Params p;
  CLI::App* cmd = app.add_subcommand(
      "rpc",
      "hwwatchd over its Unix socket. Starts its own hwwatchd on a socket in a fresh temp dir and "
      "stops it at the end. P5: Reserve+Release of a write watch on a thread of this process / "
      "the empty RPC (grpc.health.v1.Health/Check), same connection. P6: the same pair / direct "
      "perf_event_open+close on the same thread and address plus one empty RPC. P7: the daemon's "
      "RSS while holding 4 watches on each of --p7-threads threads. Throughput: Reserve+Release "
      "pairs per second with each of --threads concurrent clients, --ops pairs each run. P9: "
      "Reserve+Release of one write watch on every thread of a forked process with --p9-threads "
      "threads (a pid target; count and samples delivery) / perf_event_open on each of its "
      "threads then close all, from wherever the bench runs and from each thread's last CPU "
      "(an event installed from another CPU interrupts that one); also "
      "PTRACE_SEIZE+INTERRUPT+DR0/DR7 arm+disarm+DETACH per "
      "thread, as a debugger does, against the same.");
  cmd->add_option("--daemon", p.daemon, "hwwatchd to start (default: the one beside this program)");
  cmd->add_option("--socket", p.socket,
                  "Socket the started hwwatchd listens on (default: in a fresh temp dir)");
  cmd->add_option("--iterations", p.iterations,
                  "P5/P6: timed calls per side and run (taken in interleaved chunks of 100)")
      ->check(CLI::Range(1u, 10000000u))
      ->capture_default_str();
  cmd->add_option("--threads", p.clients, "Throughput: concurrent clients, comma-separated")
      ->delimiter(',')
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  cmd->add_option("--ops", p.ops, "Throughput: Reserve+Release pairs per run")
      ->check(CLI::Range(1u, 100000000u))
      ->capture_default_str();
  cmd->add_option("--p7-threads", p.p7_threads, "P7: threads holding 4 watches each")
      ->check(CLI::Range(1u, 20000u))
      ->capture_default_str();
  cmd->add_option("--p9-threads", p.p9_threads,
                  "P9: threads of the process a process-wide watch is armed on")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  cmd->add_option("--repeat", p.repeat, "Runs; the median is reported")->capture_default_str();
  cmd->add_flag("--suite", p.suite,
                "Full sizes (--iterations 10000 --ops 10000 --p7-threads 2500 --p9-threads 1000 "
                "--repeat 5) for every size not given");
  cmd->add_flag("--json", p.json, "Print one JSON object");
  cmd->footer(
      "Examples:\n  hwwatch-bench rpc --json\n  hwwatch-bench rpc --suite\n"
      "  hwwatch-bench rpc --iterations 200 --p7-threads 50 --repeat 1 --json");
  cmd->callback([run, cmd] { *run = [cmd] { return Run(p, *cmd); }; });
}

}  // namespace hwwatch::bench
