// The daemon's Unix socket: bound (or inherited from systemd), accepted with
// Boost.Asio, each connection's SO_PEERCRED read before the descriptor is
// handed on (to the gRPC server).
#pragma once

#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>

#include "daemon/peers.h"

namespace hwwatch::daemon {

class UnixListener {
 public:
  // Receives every accepted connection: a non-blocking, close-on-exec
  // descriptor the callee now owns, and the peer's credentials.
  using AcceptFn = std::function<void(int fd, const PeerCredentials& creds)>;

  explicit UnixListener(boost::asio::io_context& io);
  ~UnixListener();
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Creates the parent directory if needed, replaces a stale socket left by
  // a dead daemon (refuses if a live one answers), binds, applies `mode`
  // and listens. Returns an error sentence, or "" on success.
  std::string Bind(const std::string& path, mode_t mode);

  // Uses an already listening socket (systemd socket activation). The path
  // is only reported; it is not unlinked on Close().
  std::string Adopt(int listen_fd, const std::string& path);

  void Start(AcceptFn on_accept);

  // Stops accepting; unlinks the socket file if Bind() created it.
  void Close();

  const std::string& path() const { return path_; }

 private:
  void WaitForConnection();
  void AcceptReady();

  // No lock: used on the thread that runs io_ (and before it runs).
  boost::asio::io_context& io_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer backoff_;
  AcceptFn on_accept_;
  std::string path_;
  bool owns_path_ = false;
};

// Reads SO_PEERCRED of a connected Unix socket.
bool ReadPeerCredentials(int fd, PeerCredentials* out);

}  // namespace hwwatch::daemon
