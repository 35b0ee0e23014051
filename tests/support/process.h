// Test support: run the project's real binaries as child processes, with
// every wait bounded and every child reaped.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

struct passwd;

namespace hwwatch::testing {

// build/bin, from the environment ctest gives every test.
std::string BinDir();

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with the given extra environment ("K=V"), waiting
// at most `timeout`; the child is killed and reaped on timeout.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(20),
                         const std::vector<std::string>& env = {});

// A private temporary directory (mode 0755 so other uids can reach a socket
// in it), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The real hwwatchd on a temporary socket. Started in the constructor
// (waits, bounded, until the socket answers); stopped with SIGTERM in the
// destructor (SIGKILL if it does not exit in time).
class DaemonProcess {
 public:
  explicit DaemonProcess(std::vector<std::string> extra_args = {});
  // Runs `launcher... hwwatchd --socket S extra_args...`, where "{socket}"
  // in the launcher is replaced by S (e.g. systemd-socket-activate -l {socket}).
  DaemonProcess(std::vector<std::string> launcher, std::vector<std::string> extra_args);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  bool running() const { return pid_ > 0; }
  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and waits; returns the exit status (or -1).
  int Terminate();
  // SIGKILL and reap: a daemon crash.
  void Kill();
  std::string Log() const;

 private:
  TempDir dir_;
  std::string socket_;
  std::string log_;
  pid_t pid_ = -1;
};

// Drops this (forked, root) process to `user`'s uid and primary gid, with
// no supplementary groups; false if any step fails.
bool DropTo(const struct passwd& user);

// Runs `body` in a forked child that has dropped to `user` (DropTo; `body`
// is skipped if that fails), then sends the `size` bytes at `result` back
// through a pipe into the same bytes of this process, and reaps the child.
// False if they did not arrive whole (the child died). The child's pid goes
// to `child_pid` if given. RunAs is the typed way to call it.
bool RunAsUser(const struct passwd& user, const std::function<void()>& body, void* result,
               size_t size, pid_t* child_pid = nullptr);

// `body(result)` as `user` in a forked child; the child's `result`, or
// nullopt if the child died before sending it.
template <typename T, typename Body>
std::optional<T> RunAs(const struct passwd& user, T result, Body&& body,
                       pid_t* child_pid = nullptr) {
  static_assert(std::is_trivially_copyable_v<T>, "sent through a pipe as bytes");
  if (!RunAsUser(
          user, [&] { body(result); }, &result, sizeof result, child_pid)) {
    return std::nullopt;
  }
  return result;
}

// True once a connect() to the Unix socket at `path` succeeds.
bool SocketAnswers(const std::string& path);

}  // namespace hwwatch::testing
