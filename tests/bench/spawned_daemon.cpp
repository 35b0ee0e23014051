#include "tests/bench/spawned_daemon.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "client/client.h"

namespace hwwatch::bench {

namespace {

// What a fatal signal's handler must clean up. One daemon at a time; plain
// buffers and atomics because the handler may use nothing else.
std::atomic<int> g_armed{0};
std::atomic<pid_t> g_pid{0};
char g_socket[PATH_MAX];
char g_dir[PATH_MAX];
// The daemon's ptrace journal in g_dir (its runtime directory): file, folder.
char g_journal[PATH_MAX];
char g_journal_dir[PATH_MAX];

constexpr int kFatalSignals[] = {SIGINT,  SIGTERM, SIGHUP, SIGQUIT, SIGABRT,
                                 SIGSEGV, SIGBUS,  SIGFPE, SIGILL};
struct sigaction g_previous[sizeof(kFatalSignals) / sizeof(kFatalSignals[0])];

// Async-signal-safe: kill, waitpid, nanosleep, stat, unlink, rmdir only.
void KillAndReap(pid_t pid, int term_ms) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  for (int waited = 0; waited < term_ms; waited += 10) {
    const pid_t r = waitpid(pid, nullptr, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return;
    timespec ts{0, 10 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void RemoveFiles() {
  struct stat st;
  if (g_socket[0] && stat(g_socket, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(g_socket);
  if (g_dir[0]) {
    unlink(g_journal);
    rmdir(g_journal_dir);
    rmdir(g_dir);
  }
}

void OnFatalSignal(int sig) {
  const int saved = errno;
  if (g_armed.exchange(0)) {
    KillAndReap(g_pid.exchange(0), 2000);
    RemoveFiles();
  }
  errno = saved;
  // SA_RESETHAND restored the default action: die of the same signal.
  raise(sig);
}

void InstallHandlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnFatalSignal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < std::size(kFatalSignals); ++i) {
    sigaction(kFatalSignals[i], &sa, &g_previous[i]);
  }
}

void RestoreHandlers() {
  for (size_t i = 0; i < std::size(kFatalSignals); ++i) {
    sigaction(kFatalSignals[i], &g_previous[i], nullptr);
  }
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

bool CopyPath(char* dst, const std::string& src) {
  if (src.size() >= PATH_MAX) return false;
  std::memcpy(dst, src.c_str(), src.size() + 1);
  return true;
}

}  // namespace

std::string DaemonBesideSelf() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "hwwatchd";
  return (self.parent_path() / "hwwatchd").string();
}

long ReadRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

std::unique_ptr<SpawnedDaemon> SpawnedDaemon::Start(const std::string& binary,
                                                    const std::string& socket,
                                                    std::chrono::milliseconds ready_within,
                                                    std::string* error) {
  if (g_armed.load()) {
    *error = "a daemon is already running";
    return nullptr;
  }
  if (access(binary.c_str(), X_OK) != 0) {
    *error = "cannot execute " + binary + ": " + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<SpawnedDaemon> d(new SpawnedDaemon);
  if (socket.empty()) {
    std::error_code ec;
    std::string tmpl = (std::filesystem::temp_directory_path(ec) / "hwwatch-bench.XXXXXX").string();
    if (ec) tmpl = "/tmp/hwwatch-bench.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) {
      *error = "mkdtemp " + tmpl + ": " + std::strerror(errno);
      return nullptr;
    }
    d->temp_dir_ = buf.data();
    d->socket_ = d->temp_dir_ + "/hwwatchd.sock";
  } else {
    d->socket_ = socket;
  }
  g_socket[0] = g_dir[0] = g_journal[0] = g_journal_dir[0] = '\0';
  if (!CopyPath(g_socket, d->socket_) || !CopyPath(g_dir, d->temp_dir_) ||
      !CopyPath(g_journal_dir, d->temp_dir_ + "/ptrace") ||
      !CopyPath(g_journal, d->temp_dir_ + "/ptrace/armed")) {
    if (!d->temp_dir_.empty()) rmdir(d->temp_dir_.c_str());
    *error = "socket path too long";
    return nullptr;
  }
  g_pid.store(0);
  InstallHandlers();
  g_armed.store(1);

  std::vector<std::string> args = {binary, "--socket", d->socket_, "--log-level", "warn"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    d->Stop();
    return nullptr;
  }
  if (pid == 0) {
    // The daemon dies with the bench even if the bench is SIGKILLed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // Its log goes to stderr: stdout carries the bench's JSON.
    dup2(STDERR_FILENO, STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  d->pid_ = pid;
  g_pid.store(pid);

  const auto deadline = std::chrono::steady_clock::now() + ready_within;
  std::string last = "the socket never appeared";
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      g_pid.store(0);
      d->pid_ = -1;
      *error = "hwwatchd " + DescribeStatus(status) + " before it was ready";
      d->Stop();
      return nullptr;
    }
    struct stat st;
    if (stat(d->socket_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      auto c = client::Client::Connect(d->socket_, std::chrono::milliseconds(500));
      if (c) {
        c.value()->set_call_timeout(std::chrono::milliseconds(1000));
        auto caps = c.value()->GetCapabilities();
        if (caps) return d;
        last = caps.error().ToString();
      } else {
        last = c.error().ToString();
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      *error =
          "hwwatchd was not ready within " + std::to_string(ready_within.count()) + " ms: " + last;
      d->Stop();
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

SpawnedDaemon::~SpawnedDaemon() { Stop(); }

std::string SpawnedDaemon::Exited() {
  if (pid_ <= 0) return "hwwatchd is stopped";
  // A daemon that lost its socket may still be shutting down: a short grace.
  int status = 0;
  for (int i = 0; waitpid(pid_, &status, WNOHANG) != pid_; ++i) {
    if (i == 50) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  g_pid.store(0);
  pid_ = -1;
  return "hwwatchd " + DescribeStatus(status) + " during the run";
}

void SpawnedDaemon::Stop() {
  if (g_armed.exchange(0)) {
    KillAndReap(g_pid.exchange(0), 5000);
    RemoveFiles();
    RestoreHandlers();
  }
  pid_ = -1;
}

}  // namespace hwwatch::bench
