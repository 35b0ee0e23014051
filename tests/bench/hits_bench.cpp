// hwwatch-bench hits: the hit path side by side in one run. N writes of an
// 8-byte word in a tight loop (and 1,000 threads started one after another,
// each writing once), timed unwatched, under `perf record -c 1`, under
// bpftrace's watchpoint probe (when installed) and under hwwatch (a client
// of the library that keeps reading, and `hwwatch --json watch`). For each:
// hits delivered, lost, and the count of the writes; for hwwatch also the
// kernel's count (List.hits) and the share of hits whose value is exactly
// that write's sequence number. JSON through protobuf's Struct.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "client/client.h"
#include "tests/bench/spawned_daemon.h"

namespace hwwatch::bench {
namespace {

namespace v1 = ::hwwatch::v1;
using Clock = std::chrono::steady_clock;

alignas(64) volatile uint64_t g_word;
uint64_t WordAddress() { return reinterpret_cast<uintptr_t>(&g_word); }

struct Params {
  uint64_t writes = 1000000;
  uint32_t threads = 1000;
  std::string daemon;
  bool json = false;
};

// A forked workload: waits for a byte on `go`, runs, writes the loop's
// nanoseconds to `done`, exits.
class Workload {
 public:
  enum class Kind { kLoop, kThreads };
  Workload(Kind kind, uint64_t n) {
    int go[2], done[2];
    if (pipe(go) != 0 || pipe(done) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      close(go[1]);
      close(done[0]);
      char c;
      if (read(go[0], &c, 1) != 1) _exit(1);
      const auto t0 = Clock::now();
      if (kind == Kind::kLoop) {
        for (uint64_t i = 0; i < n; ++i) g_word = i + 1;
      } else {
        for (uint64_t i = 0; i < n; ++i) {
          pthread_t t;
          if (pthread_create(&t, nullptr, WriteOnce, reinterpret_cast<void*>(i + 1)) == 0)
            pthread_join(t, nullptr);
        }
      }
      const int64_t ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
      (void)!write(done[1], &ns, sizeof ns);
      // Stay until killed: watchers read the final count from a live task.
      pause();
      _exit(0);
    }
    close(go[0]);
    close(done[1]);
    go_ = go[1];
    done_ = done[0];
  }
  ~Workload() {
    close(go_);
    close(done_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  // Runs it; the loop's seconds.
  double Run() {
    (void)!write(go_, "g", 1);
    int64_t ns = 0;
    if (read(done_, &ns, sizeof ns) != sizeof ns) throw std::runtime_error("workload died");
    return static_cast<double>(ns) / 1e9;
  }

 private:
  static void* WriteOnce(void* v) {
    g_word = reinterpret_cast<uintptr_t>(v);
    return nullptr;
  }
  pid_t pid_ = -1;
  int go_ = -1, done_ = -1;
};

struct Figures {
  std::string tool;
  bool ran = false;
  std::string note;
  double seconds = 0;
  uint64_t delivered = 0, lost = 0, kernel_count = 0, exact = 0;
  bool has_kernel_count = false, has_exact = false;
};

// Runs `argv` with stdout and stderr to `out`; returns its pid.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& out) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(out.c_str(), "w");
    if (f != nullptr) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

bool Installed(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

Figures Unwatched(Workload::Kind kind, uint64_t n) {
  Workload w(kind, n);
  Figures f;
  f.tool = "unwatched";
  f.ran = true;
  f.seconds = w.Run();
  return f;
}

Figures PerfRecord(Workload::Kind kind, uint64_t n, const std::string& dir) {
  Figures f;
  f.tool = "perf record -c 1";
  if (!Installed("perf")) {
    f.note = "perf is not installed (linux-perf)";
    return f;
  }
  Workload w(kind, n);
  const std::string data = dir + "/perf.data", log = dir + "/perf.log";
  pid_t perf = Spawn({"perf", "record", "-q", "-c", "1", "-e", "mem:" + Hex(WordAddress()) + "/8:w",
                      "-p", std::to_string(w.pid()), "-o", data},
                     log);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // attached
  f.seconds = w.Run();
  kill(perf, SIGINT);
  waitpid(perf, nullptr, 0);
  const std::string script = dir + "/perf.script";
  const pid_t report = Spawn({"sh", "-c",
                              "perf report -i " + data +
                                  " --stats 2>/dev/null | awk '/SAMPLE events:/ {s=$3} /LOST "
                                  "events:/ {l=$3} END {print s+0, l+0}'"},
                             script);
  waitpid(report, nullptr, 0);
  std::istringstream in(Slurp(script));
  in >> f.delivered >> f.lost;
  f.ran = true;
  return f;
}

Figures Bpftrace(Workload::Kind kind, uint64_t n, const std::string& dir) {
  Figures f;
  f.tool = "bpftrace watchpoint";
  if (!Installed("bpftrace")) {
    f.note = "bpftrace is not installed: skipped (apt-get install bpftrace)";
    return f;
  }
  Workload w(kind, n);
  const std::string log = dir + "/bpftrace.log";
  const std::string prog = "watchpoint:" + Hex(WordAddress()) + ":8:w { @n = count(); }";
  pid_t bt = Spawn({"bpftrace", "-p", std::to_string(w.pid()), "-e", prog}, log);
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  f.seconds = w.Run();
  kill(bt, SIGINT);
  waitpid(bt, nullptr, 0);
  const std::string text = Slurp(log);
  auto at = text.find("@n: ");
  if (at != std::string::npos) f.delivered = std::stoull(text.substr(at + 4));
  f.ran = true;
  return f;
}

// hwwatch through the client library: a reader that keeps reading.
Figures HwwatchLibrary(Workload::Kind kind, uint64_t n, const std::string& socket) {
  Figures f;
  f.tool = "hwwatch (library client)";
  Workload w(kind, n);
  auto c = client::Client::Connect(socket);
  if (!c) throw std::runtime_error(c.error().ToString());
  auto stream = c.value()->Follow({}, false);
  v1::ReserveRequest req;
  if (kind == Workload::Kind::kLoop) {
    req.mutable_target()->set_tid(w.pid());
  } else {
    req.mutable_target()->set_pid(w.pid());
  }
  req.mutable_watch()->set_address(WordAddress());
  req.mutable_watch()->set_length(8);
  req.mutable_watch()->set_access(v1::ACCESS_WRITE);
  req.set_capture_value(true);
  auto r = c.value()->Reserve(req);
  if (!r) throw std::runtime_error("reserve: " + r.error().ToString());
  std::atomic<uint64_t> delivered{0}, lost{0}, exact{0};
  std::thread reader([&] {
    v1::Event e;
    uint64_t seen = 0;
    while (stream->Next(&e)) {
      if (e.has_lost()) lost += e.lost().count();
      if (!e.has_hit()) continue;
      ++seen;
      uint64_t v = 0;
      std::memcpy(&v, e.hit().value().data(), std::min<size_t>(8, e.hit().value().size()));
      // The loop's i-th write stores i; a thread case's values are 1..n in
      // thread order.
      if (kind == Workload::Kind::kLoop ? v == seen + lost : v >= 1 && v <= n) ++exact;
      ++delivered;
    }
  });
  f.seconds = w.Run();
  // Everything in flight arrives or is reported lost.
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (delivered + lost < n && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto l = c.value()->List();
  if (l) {
    for (const auto& x : l.value().reservations()) {
      if (x.id() != r->id()) continue;
      f.kernel_count = x.hits();
      f.has_kernel_count = true;
    }
  }
  stream->Cancel();
  reader.join();
  (void)c.value()->Release(r->id());
  f.delivered = delivered;
  f.lost = lost;
  f.exact = exact;
  f.has_exact = true;
  f.ran = true;
  return f;
}

// `hwwatch --json watch`, its JSON lines written to a file.
Figures HwwatchCli(Workload::Kind kind, uint64_t n, const std::string& socket,
                   const std::string& dir) {
  Figures f;
  f.tool = "hwwatch --json watch";
  Workload w(kind, n);
  std::string cli = DaemonBesideSelf();
  cli = cli.substr(0, cli.size() - std::strlen("hwwatchd")) + "hwwatch";
  const std::string out = dir + "/watch.json";
  pid_t p =
      Spawn({cli, "--socket", socket, "--json", "watch",
             kind == Workload::Kind::kLoop ? "--tid" : "--pid", std::to_string(w.pid()),
             Hex(WordAddress()), "--len", "8", "--count", std::to_string(n), "--timeout", "120"},
            out);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // reserved
  f.seconds = w.Run();
  waitpid(p, nullptr, 0);
  std::istringstream in(Slurp(out));
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"hit\":") != std::string::npos) ++f.delivered;
    if (auto at = line.find("\"lost\":{\"count\":\""); at != std::string::npos) {
      f.lost += std::stoull(line.substr(at + 17));
    }
  }
  f.ran = true;
  return f;
}

google::protobuf::Value Num(double v) {
  google::protobuf::Value x;
  x.set_number_value(v);
  return x;
}

google::protobuf::Value CaseJson(const std::string& name, uint64_t n,
                                 const std::vector<Figures>& figs) {
  google::protobuf::Value out;
  auto* s = out.mutable_struct_value()->mutable_fields();
  (*s)["case"].set_string_value(name);
  (*s)["writes"] = Num(static_cast<double>(n));
  auto* tools = (*s)["tools"].mutable_list_value();
  for (const Figures& f : figs) {
    auto* t = tools->add_values()->mutable_struct_value()->mutable_fields();
    (*t)["tool"].set_string_value(f.tool);
    (*t)["ran"].set_bool_value(f.ran);
    if (!f.note.empty()) (*t)["note"].set_string_value(f.note);
    if (!f.ran) continue;
    (*t)["seconds"] = Num(f.seconds);
    (*t)["delivered"] = Num(static_cast<double>(f.delivered));
    (*t)["lost"] = Num(static_cast<double>(f.lost));
    if (f.has_kernel_count) (*t)["kernel_count"] = Num(static_cast<double>(f.kernel_count));
    if (f.has_exact) {
      (*t)["exact_share"] = Num(f.delivered ? static_cast<double>(f.exact) / f.delivered : 0);
    }
  }
  // The ratios the targets name, within this run.
  auto seconds_of = [&](const std::string& tool) {
    for (const Figures& f : figs)
      if (f.tool == tool && f.ran) return f.seconds;
    return 0.0;
  };
  const double perf = seconds_of("perf record -c 1");
  if (perf > 0) {
    (*s)["hwwatch_library_over_perf"] = Num(seconds_of("hwwatch (library client)") / perf);
    (*s)["hwwatch_cli_over_perf"] = Num(seconds_of("hwwatch --json watch") / perf);
  }
  return out;
}

void PrintText(const std::string& name, uint64_t n, const std::vector<Figures>& figs) {
  std::printf("%s (%llu writes)\n", name.c_str(), static_cast<unsigned long long>(n));
  std::printf("  %-26s %9s %10s %9s %12s %7s\n", "tool", "seconds", "delivered", "lost",
              "kernel count", "exact");
  for (const Figures& f : figs) {
    if (!f.ran) {
      std::printf("  %-26s not run: %s\n", f.tool.c_str(), f.note.c_str());
      continue;
    }
    std::printf(
        "  %-26s %9.3f %10llu %9llu %12s %7s\n", f.tool.c_str(), f.seconds,
        static_cast<unsigned long long>(f.delivered), static_cast<unsigned long long>(f.lost),
        f.has_kernel_count ? std::to_string(f.kernel_count).c_str() : "-",
        f.has_exact ? (std::to_string(f.delivered ? 100 * f.exact / f.delivered : 0) + "%").c_str()
                    : "-");
  }
}

int Run(const Params& p) {
  char tmpl[] = "/tmp/hwwatch-bench-hits.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  std::string error;
  auto d = SpawnedDaemon::Start(p.daemon.empty() ? DaemonBesideSelf() : p.daemon, "",
                                std::chrono::seconds(20), &error);
  if (!d) {
    std::fprintf(stderr, "hwwatch-bench hits: %s\n", error.c_str());
    return 1;
  }
  google::protobuf::Value all;
  auto* cases = (*all.mutable_struct_value()->mutable_fields())["cases"].mutable_list_value();
  int rc = 0;
  try {
    for (auto [kind, n, name] :
         {std::tuple{Workload::Kind::kLoop, p.writes, std::string("tight loop")},
          std::tuple{Workload::Kind::kThreads, uint64_t{p.threads},
                     std::string("threads, one write each")}}) {
      std::vector<Figures> figs;
      figs.push_back(Unwatched(kind, n));
      figs.push_back(PerfRecord(kind, n, dir));
      figs.push_back(Bpftrace(kind, n, dir));
      figs.push_back(HwwatchLibrary(kind, n, d->socket()));
      figs.push_back(HwwatchCli(kind, n, d->socket(), dir));
      *cases->add_values() = CaseJson(name, n, figs);
      if (!p.json) PrintText(name, n, figs);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hwwatch-bench hits: %s\n", e.what());
    rc = 1;
  }
  d->Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  if (rc == 0 && p.json) {
    std::string out;
    (void)google::protobuf::util::MessageToJsonString(all, &out);
    std::printf("%s\n", out.c_str());
  }
  return rc;
}

}  // namespace

void AddHitsCommand(CLI::App& app, std::function<int()>* run) {
  static Params p;
  CLI::App* cmd = app.add_subcommand(
      "hits",
      "The hit path side by side in one run: --writes writes of a word in a tight loop, and "
      "--threads threads started one after another writing once each; unwatched, under perf "
      "record -c 1, bpftrace's watchpoint probe (if installed) and hwwatch (library client and "
      "hwwatch --json watch). Needs registers that fire (the self-test); run it in the x86_64 "
      "VM otherwise.");
  cmd->add_option("--writes", p.writes, "Writes of the tight loop")->capture_default_str();
  cmd->add_option("--threads", p.threads, "Threads of the second case")->capture_default_str();
  cmd->add_option("--daemon", p.daemon, "hwwatchd to start (default: the one beside this program)");
  cmd->add_flag("--json", p.json, "Print one JSON object");
  cmd->footer("Examples:\n  hwwatch-bench hits\n  hwwatch-bench hits --writes 100000 --json");
  cmd->callback([run] { *run = [] { return Run(p); }; });
}

}  // namespace hwwatch::bench
