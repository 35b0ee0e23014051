#include "tests/support/process.h"

#include <grp.h>
#include <pwd.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace hwwatch::testing {

namespace {

using Clock = std::chrono::steady_clock;

// Waits for `pid` until `deadline`; returns the status or nullopt.
bool WaitUntil(pid_t pid, Clock::time_point deadline, int* status) {
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return false;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

std::string BinDir() {
  const char* d = std::getenv("HWWATCH_BIN_DIR");
  return d ? d : "build/bin";
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::vector<std::string>& env) {
  CommandResult res;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return res;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (const std::string& kv : env) putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  const auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      res.timed_out = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? res.out : res.err).append(buf, n);
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  if (res.timed_out || !WaitUntil(pid, Clock::now() + timeout, &status)) {
    res.timed_out = true;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return res;
  }
  if (WIFEXITED(status)) res.exit_code = WEXITSTATUS(status);
  return res;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/hwwatch-test-XXXXXX";
  if (char* p = mkdtemp(tmpl)) path_ = p;
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

bool DropTo(const struct passwd& user) {
  return setgroups(0, nullptr) == 0 && setresgid(user.pw_gid, user.pw_gid, user.pw_gid) == 0 &&
         setresuid(user.pw_uid, user.pw_uid, user.pw_uid) == 0;
}

bool RunAsUser(const struct passwd& user, const std::function<void()>& body, void* result,
               size_t size, pid_t* child_pid) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return false;
  const pid_t child = fork();
  if (child < 0) {
    close(p[0]);
    close(p[1]);
    return false;
  }
  if (child == 0) {
    close(p[0]);
    if (DropTo(user)) body();
    (void)!write(p[1], result, size);
    _exit(0);
  }
  close(p[1]);
  if (child_pid != nullptr) *child_pid = child;
  const bool whole = read(p[0], result, size) == static_cast<ssize_t>(size);
  close(p[0]);
  waitpid(child, nullptr, 0);
  return whole;
}

bool SocketAnswers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

DaemonProcess::DaemonProcess(std::vector<std::string> extra_args)
    : DaemonProcess(std::vector<std::string>{}, std::move(extra_args)) {}

DaemonProcess::DaemonProcess(std::vector<std::string> launcher, std::vector<std::string> extra_args)
    : socket_(dir_.File("hwwatchd.sock")), log_(dir_.File("hwwatchd.log")) {
  std::vector<std::string> argv;
  for (std::string& a : launcher) argv.push_back(a == "{socket}" ? socket_ : a);
  for (const char* a : {"--socket", "", "--log-level", "debug"}) argv.push_back(a);
  argv.insert(argv.begin() + launcher.size(), BinDir() + "/hwwatchd");
  argv[launcher.size() + 2] = socket_;
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline) {
    if (SocketAnswers(socket_)) return;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // died during start-up
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int DaemonProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  if (!WaitUntil(pid_, Clock::now() + std::chrono::seconds(10), &status)) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

DaemonProcess::~DaemonProcess() { Terminate(); }

std::string DaemonProcess::Log() const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace hwwatch::testing
