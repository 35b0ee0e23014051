#include "daemon/unix_listener.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "arch/scoped_fd.h"

namespace hwwatch::daemon {

namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;

bool ReadPeerCredentials(int fd, PeerCredentials* out) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  out->uid = cred.uid;
  out->gid = cred.gid;
  out->pid = cred.pid;
  return true;
}

namespace {

// True when something accepts connections on `path` right now.
bool SomeoneListens(const std::string& path) {
  arch::ScopedFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

UnixListener::UnixListener(asio::io_context& io) : io_(io), acceptor_(io), backoff_(io) {}

UnixListener::~UnixListener() { Close(); }

std::string UnixListener::Bind(const std::string& path, mode_t mode) {
  namespace fs = std::filesystem;
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return "socket path '" + path + "' is empty or longer than a Unix socket address allows";
  }
  std::error_code ec;
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, ec);
    if (ec) return "cannot create " + parent.string() + ": " + ec.message();
  }
  auto st = fs::symlink_status(path, ec);
  if (!ec && fs::exists(st)) {
    if (!fs::is_socket(st)) return path + " exists and is not a socket; refusing to replace it";
    if (SomeoneListens(path)) return "another daemon is already listening on " + path;
    fs::remove(path, ec);  // stale socket of a daemon that died
  }
  boost::system::error_code bec;
  acceptor_.open(stream_protocol(), bec);
  if (!bec) acceptor_.bind(stream_protocol::endpoint(path), bec);
  if (bec) return "cannot bind " + path + ": " + bec.message();
  owns_path_ = true;
  path_ = path;
  if (chmod(path.c_str(), mode) != 0) {
    return "cannot chmod " + path + ": " + std::strerror(errno);
  }
  acceptor_.listen(asio::socket_base::max_listen_connections, bec);
  if (bec) return "cannot listen on " + path + ": " + bec.message();
  return "";
}

std::string UnixListener::Adopt(int listen_fd, const std::string& path) {
  boost::system::error_code bec;
  acceptor_.assign(stream_protocol(), listen_fd, bec);
  if (bec) return "cannot use inherited socket " + std::to_string(listen_fd) + ": " + bec.message();
  path_ = path;
  owns_path_ = false;
  return "";
}

void UnixListener::Start(AcceptFn on_accept) {
  on_accept_ = std::move(on_accept);
  WaitForConnection();
}

void UnixListener::WaitForConnection() {
  acceptor_.async_wait(stream_protocol::acceptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;  // closed
                         AcceptReady();
                       });
}

void UnixListener::AcceptReady() {
  // Drain every pending connection. accept4() gives the descriptor exactly
  // as gRPC needs it: non-blocking (a blocking one makes calls hang) and
  // close-on-exec.
  for (;;) {
    arch::ScopedFd fd(
        accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      // Out of descriptors or memory: back off instead of spinning on a
      // listening socket that stays readable.
      spdlog::warn("accept on {} failed: {}; retrying in 100 ms", path_, std::strerror(errno));
      backoff_.expires_after(std::chrono::milliseconds(100));
      backoff_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) WaitForConnection();
      });
      return;
    }
    PeerCredentials creds;
    if (!ReadPeerCredentials(fd.get(), &creds)) {
      spdlog::warn("SO_PEERCRED failed on a new connection: {}", std::strerror(errno));
      continue;  // closes it
    }
    on_accept_(fd.release(), creds);
  }
  WaitForConnection();
}

void UnixListener::Close() {
  backoff_.cancel();
  if (acceptor_.is_open()) {
    boost::system::error_code ec;
    acceptor_.close(ec);
  }
  if (owns_path_) {
    unlink(path_.c_str());
    owns_path_ = false;
  }
}

}  // namespace hwwatch::daemon
