// hwwatch caps: what the host's debug registers can do.
#include <string>

#include "client/cli/cli.h"

namespace hwwatch::cli {

namespace {

std::string Name(v1::Arch a) {
  switch (a) {
    case v1::ARCH_X86_64:
      return "x86_64";
    case v1::ARCH_AARCH64:
      return "aarch64";
    default:
      return "unknown";
  }
}

std::string Name(v1::SlotType t) { return t == v1::SLOT_TYPE_INST ? "instruction" : "data"; }

std::string Name(v1::Access a) {
  switch (a) {
    case v1::ACCESS_WRITE:
      return "write";
    case v1::ACCESS_READ_WRITE:
      return "read_write";
    case v1::ACCESS_EXECUTE:
      return "execute";
    case v1::ACCESS_READ:
      return "read";
    default:
      return "?";
  }
}

std::string Name(v1::Backend b) {
  switch (b) {
    case v1::BACKEND_PERF:
      return "perf";
    case v1::BACKEND_PTRACE:
      return "ptrace";
    default:
      return "auto";
  }
}

std::string Name(v1::SelfTestResult::Outcome o) {
  switch (o) {
    case v1::SelfTestResult::FIRES:
      return "fires";
    case v1::SelfTestResult::NEVER_FIRES:
      return "never fires";
    case v1::SelfTestResult::UNAVAILABLE:
      return "unavailable";
    default:
      return "not run";
  }
}

// One line per backend: "perf    fires: 5 of 5 writes hit".
void PrintSelfTestLine(const v1::SelfTestResult& t) {
  std::printf("%-7s %s%s%s\n", Name(t.backend()).c_str(), Name(t.outcome()).c_str(),
              t.detail().empty() ? "" : ": ", t.detail().c_str());
}

void PrintHuman(const v1::Capabilities& c) {
  std::printf("hwwatchd %s on %s, kernel %s, %u CPUs\n", c.daemon_version().c_str(),
              Name(c.arch()).c_str(), c.kernel_release().c_str(), c.cpus());
  std::printf("slot pools (registers per CPU):\n");
  for (const auto& p : c.pools()) {
    std::string types;
    for (int t : p.types()) {
      types += (types.empty() ? "" : " + ") + Name(static_cast<v1::SlotType>(t));
    }
    std::printf("  %u %s (%s)\n", p.slots(), p.mixed() ? "mixed" : "separate", types.c_str());
  }
  std::printf("one register watches:\n");
  for (const auto& r : c.access_rules()) {
    std::string lens;
    for (uint32_t l : r.lengths()) lens += (lens.empty() ? "" : "/") + std::to_string(l);
    std::string how =
        r.access() == v1::ACCESS_EXECUTE ? "one instruction"
        : r.word_size()
            ? "any byte range inside an aligned " + std::to_string(r.word_size()) + "-byte word"
            : "lengths " + lens + (r.naturally_aligned() ? ", naturally aligned" : "");
    std::printf("  %-11s %s\n", Name(r.access()).c_str(), how.c_str());
  }
  std::printf("largest watch: %llu bytes\n", static_cast<unsigned long long>(c.max_watch_length()));
  std::string backends;
  for (int b : c.backends()) backends += (backends.empty() ? "" : ", ") + Name(v1::Backend(b));
  std::printf("backends: %s\n", backends.empty() ? "none yet" : backends.c_str());
  const v1::Capture& cap = c.capture();
  if (cap.path() == v1::Capture::PATH_BPF) {
    std::printf("capture: bpf, values read at the trap (ring %llu KiB)\n",
                static_cast<unsigned long long>(cap.ring_bytes() / 1024));
  } else {
    std::printf("capture: perf ring, values read at delivery: %s\n", cap.detail().c_str());
  }
  std::printf("hardware self-test:\n");
  for (const auto& t : c.self_test()) {
    std::printf("  ");
    PrintSelfTestLine(t);
  }
}

}  // namespace

void AddCapsCommand(CLI::App& app, const GlobalOptions& g, Action* run) {
  CLI::App* cmd = app.add_subcommand("caps", "What this host's debug registers can do");
  cmd->footer("Examples:\n  hwwatch caps\n  hwwatch --json caps");
  cmd->callback([&g, run] {
    *run = [&g] {
      int code = kOk;
      auto c = ConnectOrReport(g, &code);
      if (!c) return code;
      auto caps = c->GetCapabilities();
      if (!caps) return ReportError(caps.error());
      if (g.json) {
        PrintJson(caps.value());
      } else {
        PrintHuman(caps.value());
      }
      return static_cast<int>(kOk);
    };
  });
}

void AddSelfTestCommand(CLI::App& app, const GlobalOptions& g, Action* run) {
  CLI::App* cmd = app.add_subcommand(
      "selftest", "Do this host's debug registers really fire? (the daemon's start-up test)");
  cmd->footer(
      "hwwatchd arms a write watch through each backend at start-up and writes the word\n"
      "five times. Exit status 0 when every backend saw its hits, 1 when one did not\n"
      "(some hypervisors accept the registers but never deliver the exceptions).\n"
      "Examples:\n  hwwatch selftest\n  hwwatch --json selftest");
  cmd->callback([&g, run] {
    *run = [&g] {
      int code = kOk;
      auto c = ConnectOrReport(g, &code);
      if (!c) return code;
      auto caps = c->GetCapabilities();
      if (!caps) return ReportError(caps.error());
      bool all_fire = caps->self_test_size() > 0;
      for (const auto& t : caps->self_test()) {
        all_fire = all_fire && t.outcome() == v1::SelfTestResult::FIRES;
        if (!g.json) PrintSelfTestLine(t);
      }
      if (g.json) {
        v1::Capabilities only;
        *only.mutable_self_test() = caps->self_test();
        PrintJson(only);
      }
      return static_cast<int>(all_fire ? kOk : kRefused);
    };
  });
}

void AddStatsCommand(CLI::App& app, const GlobalOptions& g, Action* run) {
  CLI::App* cmd = app.add_subcommand("stats", "Daemon counters, and who the daemon thinks you are");
  cmd->footer("Examples:\n  hwwatch stats\n  hwwatch --json stats");
  cmd->callback([&g, run] {
    *run = [&g] {
      int code = kOk;
      auto c = ConnectOrReport(g, &code);
      if (!c) return code;
      auto s = c->Stats();
      if (!s) return ReportError(s.error());
      const auto& st = s.value();
      if (g.json) {
        PrintJson(st);
        return static_cast<int>(kOk);
      }
      std::printf("uptime %llds, connections %llu active / %llu total, reservations %llu\n",
                  static_cast<long long>(st.uptime().seconds()),
                  static_cast<unsigned long long>(st.connections_active()),
                  static_cast<unsigned long long>(st.connections_total()),
                  static_cast<unsigned long long>(st.reservations_active()));
      std::printf("you: uid %u gid %u pid %d session %llu\n", st.caller().uid(), st.caller().gid(),
                  st.caller().pid(), static_cast<unsigned long long>(st.caller().session_id()));
      for (const auto& [method, n] : st.calls()) {
        std::printf("  %-16s %llu calls\n", method.c_str(), static_cast<unsigned long long>(n));
      }
      return static_cast<int>(kOk);
    };
  });
}

}  // namespace hwwatch::cli
