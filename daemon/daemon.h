// hwwatchd assembled: the Unix listener (Boost.Asio), the peer registry, and
// the gRPC server that serves WatchpointManager, health and reflection on
// the accepted connections.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>

#include "daemon/peers.h"
#include "daemon/service.h"
#include "daemon/unix_listener.h"

namespace grpc {
class Server;
}

namespace hwwatch::daemon {

struct DaemonOptions {
  std::string socket_path = "/run/hwwatchd/hwwatchd.sock";
  mode_t socket_mode = 0666;
  // Holds the journal of registers armed through ptrace (ptrace/); default:
  // the socket's directory. Must survive a daemon restart.
  std::string runtime_dir;
  // A listening socket inherited from systemd (socket activation), or -1.
  int inherited_fd = -1;
  // Handle SIGINT/SIGTERM (off for in-process tests).
  bool handle_signals = true;
  engine::LockMode lock = engine::LockMode::kSharded;
  ReservationLimits limits;
  CaptureOptions capture;
};

class Daemon {
 public:
  Daemon();
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Discovers the host, starts the gRPC server and binds the socket.
  // Returns an error sentence, or "" on success.
  std::string Start(const DaemonOptions& options);

  // Serves until Stop() or a termination signal; then shuts everything down
  // and removes the socket.
  void Run();

  // Thread-safe.
  void Stop();

 private:
  void WatchHangups();
  void ScheduleSweep();
  void Shutdown();

  // No lock: everything below is used on the thread that calls Start() and
  // Run() (the io_context runs there); Stop() only posts to io_, and the
  // peer registry and the reservations lock for themselves.
  boost::asio::io_context io_;
  PeerRegistry peers_;
  std::unique_ptr<ReservationManager> reservations_;
  std::unique_ptr<WatchpointService> service_;
  std::unique_ptr<grpc::Server> server_;
  UnixListener listener_;
  boost::asio::posix::stream_descriptor hangups_;
  boost::asio::steady_timer sweep_;
  boost::asio::signal_set signals_;
};

}  // namespace hwwatch::daemon
