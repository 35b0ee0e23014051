// A hwwatchd started by hwwatch-bench for the length of one run: on a socket
// in a fresh temporary directory, killed, reaped and cleaned up at the end,
// whatever way the run ends.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

namespace hwwatch::bench {

class SpawnedDaemon {
 public:
  // Starts `binary --socket <socket> --log-level warn` and waits until the
  // socket exists and a GetCapabilities call succeeds, for at most
  // `ready_within`. An empty `socket` means <fresh temp dir>/hwwatchd.sock.
  // Returns null and sets `error` when the daemon did not become ready (it
  // is then already stopped and cleaned up).
  static std::unique_ptr<SpawnedDaemon> Start(const std::string& binary, const std::string& socket,
                                              std::chrono::milliseconds ready_within,
                                              std::string* error);

  SpawnedDaemon(const SpawnedDaemon&) = delete;
  SpawnedDaemon& operator=(const SpawnedDaemon&) = delete;
  ~SpawnedDaemon();

  // SIGTERM, SIGKILL if it has not exited within a bound, reap; then remove
  // the socket and the temp dir. Idempotent.
  void Stop();

  // Empty while the daemon runs (after a grace of 0.5 s); else how it
  // ended (it is then reaped).
  std::string Exited();

  pid_t pid() const { return pid_; }
  const std::string& socket() const { return socket_; }

 private:
  SpawnedDaemon() = default;

  pid_t pid_ = -1;
  std::string socket_;
  std::string temp_dir_;  // empty when the caller chose the socket
};

// dirname(/proc/self/exe)/hwwatchd.
std::string DaemonBesideSelf();

// VmRSS of a process in KiB, or -1.
long ReadRssKiB(pid_t pid);

}  // namespace hwwatch::bench
