// hwwatchd: arbitrates the host's hardware debug registers over gRPC.
#include <grp.h>
#include <spdlog/cfg/helpers.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "daemon/daemon.h"

namespace {

// Each reservation on a thread holds a perf event descriptor (and, with
// BPF capture, its link's): a process with thousands of threads needs
// many. Up to the kernel's fs.nr_open where the daemon may raise its hard
// limit (root outside systemd, whose unit sets LimitNOFILE), else the hard
// limit.
void RaiseFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  unsigned long nr_open = 0;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    if (std::fscanf(f, "%lu", &nr_open) != 1) nr_open = 0;
    std::fclose(f);
  }
  const rlimit most{nr_open, nr_open};
  if (nr_open > lim.rlim_max && setrlimit(RLIMIT_NOFILE, &most) == 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// "<N>": the syslog priority of a message, which journald reads from the
// start of each line of a service's stderr (SyslogLevelPrefix=yes).
class SyslogPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPrefix[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const auto level = static_cast<size_t>(msg.level);
    const std::string_view p = kPrefix[level < 7 ? level : 6];
    dest.append(p.data(), p.data() + p.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriority>();
  }
};

// Under systemd (JOURNAL_STREAM names our stderr) log plain lines with
// their priority to stderr, and let the journal add time and name.
void LogToJournalWhenThere() {
  if (getenv("JOURNAL_STREAM") == nullptr) return;
  auto logger = std::make_shared<spdlog::logger>("hwwatchd",
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<SyslogPriority>('*').set_pattern("%*%v");
  logger->set_formatter(std::move(formatter));
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace

int main(int argc, char** argv) {
  hwwatch::daemon::DaemonOptions options;
  std::string log_level = "info";
  std::string mode_text = "0666";

  CLI::App app{
      "hwwatchd: owns the hardware debug registers of this host and hands them out"
      " over gRPC on a Unix socket."};
  app.add_option("--socket", options.socket_path, "Unix socket to listen on")
      ->capture_default_str();
  app.add_option("--socket-mode", mode_text,
                 "Permissions of the socket (octal); every request is still authorized by the"
                 " caller's uid")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_option("--runtime-dir", options.runtime_dir,
                 "Directory for the journal of registers armed through ptrace, kept across "
                 "restarts (default: the socket's directory)");
  std::string lock = "sharded";
  app.add_option("--lock", lock,
                 "Constraint-engine locking: sharded (the kernel's scheme) or global (one mutex)")
      ->check(CLI::IsMember({"sharded", "global"}))
      ->capture_default_str();
  app.add_option("--quota-slots", options.limits.slots_per_uid,
                 "Registers one non-root uid may hold at once")
      ->capture_default_str();
  std::string cpu_group;
  app.add_option("--cpu-group", cpu_group,
                 "Group (name or gid) whose members may also watch CPUs and kernel addresses");
  std::string capture = "auto";
  app.add_option("--capture", capture,
                 "How hits are captured: auto (a BPF program at the trap where the kernel allows"
                 " it, else perf rings) or ring (perf rings; values read at delivery)")
      ->check(CLI::IsMember({"auto", "ring"}))
      ->capture_default_str();
  uint64_t ring_kb = options.capture.ring_bytes / 1024;
  app.add_option("--bpf-ring-kb", ring_kb,
                 "Size of the BPF capture ring in KiB (a power of two; 256 KiB to 1 GiB)")
      ->check(CLI::Range(uint64_t{256}, uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--bpf-max-watches", options.capture.max_watches,
                 "Reservations with samples delivery held at once (the capture program's "
                 "tables, preallocated in the kernel: about 200 bytes each)")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  options.capture.bpf = capture == "auto";
  options.capture.ring_bytes = ring_kb * 1024;
  if (!cpu_group.empty()) {
    if (const group* g = getgrnam(cpu_group.c_str())) {
      options.limits.cpu_group = g->gr_gid;
    } else if (cpu_group.find_first_not_of("0123456789") == std::string::npos) {
      options.limits.cpu_group = static_cast<gid_t>(std::stoul(cpu_group));
    } else {
      std::fprintf(stderr, "hwwatchd: --cpu-group: no group '%s'\n", cpu_group.c_str());
      return 2;
    }
  }
  options.lock = *hwwatch::engine::ParseLockMode(lock);

  char* end = nullptr;
  unsigned long mode = std::strtoul(mode_text.c_str(), &end, 8);
  if (mode_text.empty() || *end != '\0' || mode > 07777) {
    std::fprintf(stderr, "hwwatchd: --socket-mode '%s' is not an octal file mode\n",
                 mode_text.c_str());
    return 2;
  }
  options.socket_mode = static_cast<mode_t>(mode);
  LogToJournalWhenThere();
  spdlog::set_level(spdlog::level::from_str(log_level));

  // systemd socket activation hands over one listening socket.
  if (sd_listen_fds(1) == 1) options.inherited_fd = SD_LISTEN_FDS_START;
  RaiseFileLimit();
  // Tracees report to the tracer thread's signalfd: SIGCHLD is blocked in
  // every thread (all are started after this).
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &chld, nullptr);

  hwwatch::daemon::Daemon daemon;
  std::string err = daemon.Start(options);
  if (!err.empty()) {
    spdlog::critical("{}", err);
    std::fprintf(stderr, "hwwatchd: %s\n", err.c_str());
    return 1;
  }
  // STATUS= is what `systemctl status` shows beside the unit's state.
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s%s", options.socket_path.c_str(),
             options.inherited_fd >= 0 ? " (socket activated)" : "");
  daemon.Run();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  spdlog::info("stopped");
  return 0;
}
