// hwwatch reserve, release, list, slots: reservations from the shell.
#include <signal.h>
#include <time.h>

#include <pthread.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "client/cli/cli.h"
#include "client/symbols.h"

namespace hwwatch::cli {

namespace {

// Target and watch flags shared by reserve and slots --explain.
struct WatchFlags {
  int64_t pid = 0, tid = 0;
  int64_t cpu = -1;
  std::string address;
  std::string symbol;
  uint64_t len = 1;
  std::string access = "w";
  bool over_cover = false;
  bool changed = false;
  std::string condition;
  CLI::Option* len_option = nullptr;
  bool address_required = true;
  // The target process's symbols (opened for --symbol or by Symbols()).
  std::shared_ptr<client::ProcessSymbols> symbols;

  void Add(CLI::App* cmd, bool required) {
    address_required = required;
    auto* p = cmd->add_option("--pid", pid, "Watch every thread of a process");
    auto* t = cmd->add_option("--tid", tid, "Watch one thread");
    auto* c = cmd->add_option("--cpu", cpu, "Watch everything on one CPU (root)");
    p->excludes(t)->excludes(c);
    t->excludes(c);
    auto* a = cmd->add_option("ADDR", address, "Address (0x... hex or decimal)");
    auto* sym = cmd->add_option("--symbol", symbol,
                                "A global variable (or function, with --access x) of the target: "
                                "NAME in its executable or libraries, or LIB:NAME; --len defaults "
                                "to its size");
    sym->excludes(a)->excludes(c);
    len_option = cmd->add_option("--len", len, "Bytes to watch")->capture_default_str();
    cmd->add_option("--access", access, "w (write), rw (read/write), x (execute), r (read)")
        ->check(CLI::IsMember({"w", "rw", "x", "r"}))
        ->capture_default_str();
    cmd->add_flag("--over-cover", over_cover,
                  "Use fewer, larger registers; hits outside the range are filtered");
    cmd->add_flag("--changed", changed,
                  "Report only writes that change the value (as GDB's watch); checked at the trap");
    cmd->add_option("--if", condition,
                    "Report only hits where 'value OP N' or 'value & MASK OP N' holds (OP: == != "
                    "< <= > >=; the value as an integer of --len bytes); checked at the trap");
  }

  // The process of --pid or --tid (0 for --cpu).
  pid_t Process() const {
    if (pid > 0) return static_cast<pid_t>(pid);
    if (tid <= 0) return 0;
    std::ifstream in("/proc/" + std::to_string(tid) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
    }
    return static_cast<pid_t>(tid);
  }

  // The target's symbols, opened once; nullptr (with `why`) when they
  // cannot be read.
  client::ProcessSymbols* Symbols(std::string* why = nullptr) {
    if (symbols) return symbols.get();
    const pid_t p = Process();
    if (p <= 0) {
      if (why) *why = "--symbol needs --pid or --tid";
      return nullptr;
    }
    auto opened = client::ProcessSymbols::Open(p);
    if (auto* err = std::get_if<std::string>(&opened)) {
      if (why) *why = *err;
      return nullptr;
    }
    symbols = std::move(std::get<std::unique_ptr<client::ProcessSymbols>>(opened));
    return symbols.get();
  }

  // Fills target and watch (resolving --symbol); returns an error sentence
  // or "".
  std::string Fill(v1::Target* target, v1::Watch* watch) {
    if (pid > 0) {
      target->set_pid(static_cast<int32_t>(pid));
    } else if (tid > 0) {
      target->set_tid(static_cast<int32_t>(tid));
    } else if (cpu >= 0) {
      target->set_cpu(static_cast<uint32_t>(cpu));
    } else {
      return "name a target: --pid P, --tid T or --cpu N";
    }
    uint64_t addr = 0;
    uint64_t length = len;
    if (!symbol.empty()) {
      std::string why;
      client::ProcessSymbols* syms = Symbols(&why);
      if (syms == nullptr) return "cannot resolve '" + symbol + "': " + why;
      auto found = syms->Find(symbol);
      if (auto* err = std::get_if<std::string>(&found)) return *err;
      const client::Symbol& sym = std::get<client::Symbol>(found);
      addr = sym.address;
      if (len_option->count() == 0) length = sym.function || sym.size == 0 ? 1 : sym.size;
      watch->set_symbol(symbol);
    } else {
      if (address.empty() && !address_required) return "";
      errno = 0;
      char* end = nullptr;
      addr = std::strtoull(address.c_str(), &end, 0);
      if (address.empty()) return "name what to watch: ADDR or --symbol NAME";
      if (*end != '\0' || errno != 0) {
        return "'" + address + "' is not an address (use 0x... or decimal)";
      }
    }
    watch->set_address(addr);
    watch->set_length(length);
    watch->set_over_cover(over_cover);
    watch->set_changed(changed);
    watch->set_condition(condition);
    watch->set_access(access == "w"    ? v1::ACCESS_WRITE
                      : access == "rw" ? v1::ACCESS_READ_WRITE
                      : access == "x"  ? v1::ACCESS_EXECUTE
                                       : v1::ACCESS_READ);
    return "";
  }
};

// How a reservation reaches the registers: --backend, --slot, --stop.
struct BackendFlags {
  std::string backend = "auto";
  int64_t slot = -1;
  bool stop = false;

  void Add(CLI::App* cmd) {
    cmd->add_option("--backend", backend,
                    "auto, perf or ptrace (hwwatchd traces the target and writes its registers)")
        ->check(CLI::IsMember({"auto", "perf", "ptrace"}))
        ->capture_default_str();
    cmd->add_option("--slot", slot, "The debug register to use (implies --backend ptrace)")
        ->check(CLI::Range(0, 15));
    cmd->add_flag("--stop", stop,
                  "Perf: stop the thread at each hit (hwwatchd takes the trap unless a "
                  "debugger traces the thread)");
  }

  void Fill(v1::ReserveRequest& req) const {
    req.set_backend(backend == "perf"     ? v1::BACKEND_PERF
                    : backend == "ptrace" ? v1::BACKEND_PTRACE
                                          : v1::BACKEND_AUTO);
    if (slot >= 0) req.set_slot(static_cast<uint32_t>(slot));
    if (stop) req.set_delivery(v1::DELIVERY_STOP);
  }
};

#if defined(__x86_64__)
constexpr bool kHitIpIsAfterAccess = true;
#else
constexpr bool kHitIpIsAfterAccess = false;
#endif

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%#" PRIx64, v);
  return b;
}

std::string TargetText(const v1::Target& t) {
  switch (t.kind_case()) {
    case v1::Target::kTid:
      return "tid " + std::to_string(t.tid());
    case v1::Target::kPid:
      return "pid " + std::to_string(t.pid());
    case v1::Target::kCpu:
      return "cpu " + std::to_string(t.cpu());
    case v1::Target::kThreadOnCpu:
      return "tid " + std::to_string(t.thread_on_cpu().tid()) + " on cpu " +
             std::to_string(t.thread_on_cpu().cpu());
    default:
      return "?";
  }
}

void PrintReservation(const v1::Reservation& r) {
  std::string regs;
  for (const auto& g : r.registers()) {
    regs += (regs.empty() ? "" : " ") + Hex(g.address()) + "/" + std::to_string(g.length());
  }
  const std::string sym = r.watch().symbol().empty() ? "" : " (" + r.watch().symbol() + ")";
  std::printf(
      "%-6" PRIu64 " %-18s %s+%" PRIu64 "%s %-10s weight %u  hits %" PRIu64 "  uid %u  [%s]%s\n",
      r.id(), TargetText(r.target()).c_str(), Hex(r.watch().address()).c_str(), r.watch().length(),
      sym.c_str(), v1::Access_Name(r.watch().access()).c_str() + 7, r.weight(), r.hits(),
      r.owner().uid(), regs.c_str(), r.orphaned() ? "  orphaned (leased)" : "");
}

sigset_t TermSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Blocks SIGINT/SIGTERM in this thread and every thread it starts later
// (gRPC's among them), so that Ctrl-C reaches WaitForSignal, not the
// default action: the command then releases cleanly.
void BlockTermSignals() {
  sigset_t set = TermSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Waits for SIGINT/SIGTERM (true), or `seconds` (< 0: forever), or until
// *stop is set (checked every 100 ms).
bool WaitForSignal(double seconds, const std::atomic<bool>* stop = nullptr) {
  const sigset_t set = TermSignals();
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(seconds < 0 ? 1e9 : seconds));
  while (!(stop && stop->load())) {
    const Clock::duration left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return false;
    const Clock::duration slice =
        std::min<Clock::duration>(left, std::chrono::milliseconds(stop ? 100 : 1000));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(slice).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    if (sigtimedwait(&set, nullptr, &ts) > 0) return true;
  }
  return false;
}

// Reads `len` bytes at `addr` of task `pid` (as the caller, who may trace
// it: the daemon checked). Empty when it cannot.
std::string ReadTarget(pid_t pid, uint64_t addr, uint64_t len) {
  std::string out(std::min<uint64_t>(len, 64), '\0');
  iovec local{out.data(), out.size()};
  iovec remote{reinterpret_cast<void*>(addr), out.size()};
  if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(out.size())) {
    return "";
  }
  return out;
}

// A watched value for people: lengths 1/2/4/8 as a little-endian unsigned
// number, anything else as hex bytes.
std::string ValueText(const std::string& bytes) {
  if (bytes.empty()) return "?";
  if (bytes.size() == 1 || bytes.size() == 2 || bytes.size() == 4 || bytes.size() == 8) {
    uint64_t v = 0;
    std::memcpy(&v, bytes.data(), bytes.size());
    return std::to_string(v);
  }
  std::string out = "0x";
  char b[4];
  for (size_t i = bytes.size(); i-- > 0;) {
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(bytes[i]));
    out += b;
  }
  return out;
}

std::string ClockText(const google::protobuf::Timestamp& t) {
  const time_t secs = static_cast<time_t>(t.seconds());
  tm local{};
  localtime_r(&secs, &local);
  char b[32];
  std::snprintf(b, sizeof b, "%02d:%02d:%02d.%06d", local.tm_hour, local.tm_min, local.tm_sec,
                t.nanos() / 1000);
  return b;
}

}  // namespace

void AddReservationCommands(CLI::App& app, const GlobalOptions& g, Action* run) {
  {
    static WatchFlags w;
    static BackendFlags b;
    static std::string label;
    static double hold = -1;
    static uint32_t lease = 0;
    CLI::App* cmd = app.add_subcommand(
        "reserve", "Reserve a watch and hold it until Ctrl-C or --hold runs out");
    w.Add(cmd, true);
    b.Add(cmd);
    cmd->add_option("--hold", hold, "Seconds to hold it (default: until Ctrl-C)");
    cmd->add_option("--label", label, "Free text shown by list");
    cmd->add_option("--lease", lease,
                    "Seconds the watch outlives this command if it dies (reclaimable)");
    cmd->footer(
        "Examples:\n  hwwatch reserve --tid 1234 0x601040 --len 8 --access w\n"
        "  hwwatch reserve --cpu 0 0xffffffff81e00000 --len 8 --access rw --hold 60");
    cmd->callback([&g, run] {
      *run = [&g] {
        v1::ReserveRequest req;
        if (std::string err = w.Fill(req.mutable_target(), req.mutable_watch()); !err.empty()) {
          std::fprintf(stderr, "hwwatch: %s\n", err.c_str());
          return static_cast<int>(kUsage);
        }
        b.Fill(req);
        req.set_label(label);
        req.mutable_lease()->set_seconds(lease);
        BlockTermSignals();
        int code = kOk;
        auto c = ConnectOrReport(g, &code);
        if (!c) return code;
        auto r = c->Reserve(req);
        if (!r) return ReportError(r.error());
        if (g.json) {
          PrintJson(r.value());
        } else {
          PrintReservation(r.value());
        }
        std::fflush(stdout);
        WaitForSignal(hold);
        auto rel = c->Release(r->id());
        if (!rel) return ReportError(rel.error());
        return static_cast<int>(kOk);
      };
    });
  }
  {
    static uint64_t id = 0;
    CLI::App* cmd = app.add_subcommand("release", "Release one of your reservations");
    cmd->add_option("ID", id, "Reservation id (see list)")->required();
    cmd->footer("Example:\n  hwwatch release 42");
    cmd->callback([&g, run] {
      *run = [&g] {
        int code = kOk;
        auto c = ConnectOrReport(g, &code);
        if (!c) return code;
        auto r = c->Release(id);
        if (!r) return ReportError(r.error());
        if (g.json) std::printf("{}\n");
        return static_cast<int>(kOk);
      };
    });
  }
  {
    static bool all = false;
    CLI::App* cmd = app.add_subcommand("list", "Your reservations (root: --all for everyone's)");
    cmd->add_flag("--all", all, "Every reservation on the host (root)");
    cmd->footer("Examples:\n  hwwatch list\n  hwwatch --json list --all");
    cmd->callback([&g, run] {
      *run = [&g] {
        int code = kOk;
        auto c = ConnectOrReport(g, &code);
        if (!c) return code;
        auto r = c->List(all);
        if (!r) return ReportError(r.error());
        if (g.json) {
          PrintJson(r.value());
        } else if (r->reservations().empty()) {
          std::printf("no reservations\n");
        } else {
          for (const auto& res : r->reservations()) PrintReservation(res);
        }
        return static_cast<int>(kOk);
      };
    });
  }
  {
    static WatchFlags w;
    static bool explain = false;
    CLI::App* cmd = app.add_subcommand(
        "slots",
        "Who holds the debug registers, per CPU and per task; --explain: would a watch "
        "fit now, and if not, why");
    cmd->add_flag("--explain", explain, "Check one watch (needs a target and ADDR)");
    w.Add(cmd, false);
    cmd->footer(
        "Examples:\n  hwwatch slots\n  hwwatch slots --explain --tid 1234 0x601040 --len 8");
    cmd->callback([&g, run] {
      *run = [&g] {
        v1::SlotsRequest req;
        if (explain) {
          if (std::string err = w.Fill(req.mutable_probe_target(), req.mutable_probe_watch());
              !err.empty()) {
            std::fprintf(stderr, "hwwatch: %s\n", err.c_str());
            return static_cast<int>(kUsage);
          }
        }
        int code = kOk;
        auto c = ConnectOrReport(g, &code);
        if (!c) return code;
        auto r = c->Slots(req);
        if (!r) return ReportError(r.error());
        if (g.json) {
          PrintJson(r.value());
          return static_cast<int>(r->has_probe() && !r->probe().fits() ? kRefused : kOk);
        }
        std::printf("cpu  pool  slots  cpu-targets  busiest-task  free  tasks by slots held\n");
        for (const auto& cs : r->cpus()) {
          std::string hist;
          for (int n = 0; n < cs.tasks_by_slots_size(); ++n) {
            if (cs.tasks_by_slots(n)) {
              hist += (hist.empty() ? "" : ", ") + std::to_string(cs.tasks_by_slots(n)) + " hold " +
                      std::to_string(n + 1);
            }
          }
          std::printf("%-4u %-5s %5u  %11u  %12u  %4u  %s\n", cs.cpu(),
                      cs.slot_type() == v1::SLOT_TYPE_INST ? "inst" : "data", cs.slots(),
                      cs.cpu_pinned(), cs.max_task_pinned(), cs.free(),
                      hist.empty() ? "-" : hist.c_str());
        }
        for (const auto& t : r->tasks()) {
          std::string per;
          for (const auto& [cpu, n] : t.per_cpu()) {
            per += " +" + std::to_string(n) + " on cpu " + std::to_string(cpu);
          }
          std::ifstream comm("/proc/" + std::to_string(t.tid()) + "/comm");
          std::string name;
          std::getline(comm, name);
          const std::string outside =
              t.has_held_outside() && t.held_outside() > 0
                  ? "; " + std::to_string(t.held_outside()) + " more held outside hwwatchd"
                  : "";
          std::printf("task %d (%s): %u on every CPU%s%s\n", t.tid(),
                      name.empty() ? "?" : name.c_str(), t.all_cpus(), per.c_str(),
                      outside.c_str());
        }
        if (r->has_probe()) {
          const auto& p = r->probe();
          if (p.fits()) {
            std::printf("fits: needs %u register(s)", p.weight());
            if (p.held_outside() > 0) {
              std::printf(" (%u slot(s) on the task are held outside hwwatchd)", p.held_outside());
            }
            std::printf("\n");
          } else {
            std::printf("does not fit: %s\n", p.refusal().explanation().c_str());
            return static_cast<int>(kRefused);
          }
        }
        return static_cast<int>(kOk);
      };
    });
  }
  {
    static WatchFlags w;
    static BackendFlags b;
    static uint64_t count = 0;
    static double timeout = -1;
    CLI::App* cmd = app.add_subcommand(
        "watch", "Watch memory and print every hit (who, where, old -> new) as it happens");
    w.Add(cmd, true);
    b.Add(cmd);
    cmd->add_option("--count", count, "Stop after N hits (default: no limit)");
    cmd->add_option("--timeout", timeout, "Stop after S seconds (default: until Ctrl-C)");
    cmd->footer(
        "One line per hit: time, thread, instruction pointer, address, old -> new value.\n"
        "A new value marked ~ was read when the hit was delivered, not at the trap (no BPF\n"
        "capture here: see `hwwatch caps`); later writes may show in it.\n"
        "With --json: one JSON object per event (protobuf JSON of hwwatch.v1.Event).\n"
        "Examples:\n  hwwatch watch --tid 1234 0x601040 --len 4 --count 3\n"
        "  hwwatch --json watch --tid 1234 0x601040 --len 8 --timeout 10");
    cmd->callback([&g, run] {
      *run = [&g] {
        v1::ReserveRequest req;
        if (std::string err = w.Fill(req.mutable_target(), req.mutable_watch()); !err.empty()) {
          std::fprintf(stderr, "hwwatch: %s\n", err.c_str());
          return static_cast<int>(kUsage);
        }
        req.set_delivery(v1::DELIVERY_SAMPLES);
        b.Fill(req);
        if (req.backend() == v1::BACKEND_PTRACE || req.has_slot()) {
          req.set_delivery(v1::DELIVERY_DEFAULT);
        }
        req.set_capture_value(true);
        BlockTermSignals();
        int code = kOk;
        auto c = ConnectOrReport(g, &code);
        if (!c) return code;
        // Follow this connection's reservations first, so that not even the
        // first hit after arming is missed.
        auto stream = c->Follow({}, true);
        auto r = c->Reserve(req);
        if (!r) {
          stream->Cancel();
          (void)stream->Finish();
          return ReportError(r.error());
        }
        // The value before the first hit, read once the watch is armed (a
        // write racing this read shows as old == new on the first line).
        const pid_t task = req.target().has_tid() ? req.target().tid() : req.target().pid();
        std::string last =
            task > 0 ? ReadTarget(task, req.watch().address(), req.watch().length()) : "";
        // Instruction and data addresses as names, where the target has them.
        client::ProcessSymbols* syms = task > 0 ? w.Symbols() : nullptr;
        // x86 reports a data hit after the instruction: its line is the one before.
        const bool after = kHitIpIsAfterAccess && req.watch().access() != v1::ACCESS_EXECUTE;
        auto named = [&](uint64_t a, bool before) {
          const std::string n = syms != nullptr ? syms->Describe(a, before) : "";
          return n.empty() ? Hex(a) : Hex(a) + " " + n;
        };
        const uint64_t id = r->id();
        if (!g.json) {
          const std::string shared =
              r->sharers() > 1 ? ", shared with " + std::to_string(r->sharers() - 1) + " other"
                               : "";
          const std::string what =
              r->watch().symbol().empty() ? std::string() : r->watch().symbol() + " at ";
          std::fprintf(stderr,
                       "watching %s %s%s+%" PRIu64 " (reservation %" PRIu64
                       ", %u register(s)%s); Ctrl-C to stop\n",
                       TargetText(r->target()).c_str(), what.c_str(),
                       Hex(r->watch().address()).c_str(), r->watch().length(), id, r->weight(),
                       shared.c_str());
        }
        // Ctrl-C, SIGTERM or --timeout end the stream from this thread.
        std::atomic<bool> done{false};
        std::thread stopper([&] {
          WaitForSignal(timeout, &done);
          stream->Cancel();
        });
        uint64_t hits = 0;
        bool released = false;
        v1::Event e;
        while ((count == 0 || hits < count) && stream->Next(&e)) {
          if (g.json) {
            PrintJson(e);
          } else if (e.has_hit()) {
            const v1::Hit& h = e.hit();
            const std::string now = h.has_value() ? h.value() : "";
            // Read at the trap, the hit carries its own old value; read at
            // delivery (marked ~), later writes may show.
            if (h.has_old_value()) last = h.old_value();
            const char* mark = h.value_source() == v1::VALUE_AT_TRAP ? "" : "~";
            std::printf("%s  tid %-7d ip %-18s  addr %-18s  %s -> %s%s\n",
                        ClockText(e.time()).c_str(), h.tid(), named(h.ip(), after).c_str(),
                        named(h.address(), false).c_str(), ValueText(last).c_str(), mark,
                        ValueText(now).c_str());
            if (!now.empty()) last = now;
          } else if (e.has_lost()) {
            std::printf("!! %" PRIu64 " event(s) lost: this reader was too slow\n",
                        e.lost().count());
          } else if (e.has_released()) {
            std::printf("reservation %" PRIu64 " released: %s\n", e.released().reservation_id(),
                        e.released().why().c_str());
          } else if (e.has_exited()) {
            std::printf("thread %d exited\n", e.exited().tid());
          } else if (e.has_thread_added()) {
            std::printf("thread %d started: watched too\n", e.thread_added().tid());
          } else if (e.has_execed()) {
            std::printf("process %d exec'd a new program: the watch ended\n", e.execed().pid());
          }
          std::fflush(stdout);
          if (e.has_hit()) ++hits;
          if (e.has_released()) {
            released = true;
            break;
          }
        }
        done = true;
        stream->Cancel();
        stopper.join();
        grpc::Status end = stream->Finish();
        if (!end.ok() && end.error_code() != grpc::StatusCode::CANCELLED) {
          return ReportError(client::Error::FromStatus(end));
        }
        if (!released) {
          auto rel = c->Release(id);
          if (!rel) return ReportError(rel.error());
        }
        if (!g.json) std::fprintf(stderr, "%" PRIu64 " hit(s)\n", hits);
        return static_cast<int>(kOk);
      };
    });
  }
}

}  // namespace hwwatch::cli
