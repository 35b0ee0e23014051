// Who is on the other end of each client connection.
//
// gRPC 1.51 does not report a caller's credentials, so hwwatchd accepts
// every connection itself, reads SO_PEERCRED, and hands the socket to the
// gRPC server. A call's ServerContext::peer() then reads "fd:N", the number
// of the accepted socket, and this registry maps it back to the peer.
//
// File descriptor numbers are reused after a close: the registry keeps a
// duplicate of each socket so that (a) the peer's hang-up is seen through
// EPOLLRDHUP even after gRPC closed its own descriptor, and (b) a stale
// entry is recognised because the number no longer names the same socket
// (compared by inode).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "arch/scoped_fd.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::daemon {

struct PeerCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
};

struct Peer {
  uint64_t session_id = 0;
  PeerCredentials creds;
  int grpc_fd = -1;  // the descriptor handed to gRPC ("fd:N")
};

class PeerRegistry {
 public:
  using DisconnectFn = std::function<void(const Peer&)>;

  PeerRegistry();
  ~PeerRegistry();
  PeerRegistry(const PeerRegistry&) = delete;
  PeerRegistry& operator=(const PeerRegistry&) = delete;

  // Called for every session that ends (from the thread calling Poll/Sweep).
  void OnDisconnect(DisconnectFn fn) { on_disconnect_ = std::move(fn); }

  // Registers a freshly accepted socket before it is given to gRPC. Any
  // older session recorded under the same descriptor number is ended first
  // (the number was free, so that connection is closed). Returns the new
  // session's id, or 0 if the socket could not be tracked.
  uint64_t Add(int grpc_fd, const PeerCredentials& creds) EXCLUDES(mu_);

  // The peer behind a call, from ServerContext::peer() ("fd:N").
  std::optional<Peer> Lookup(std::string_view grpc_peer) const EXCLUDES(mu_);

  // The epoll descriptor that becomes readable when a tracked peer hangs
  // up; the owner waits on it and then calls Poll().
  int epoll_fd() const { return epoll_fd_.get(); }

  // Ends the sessions whose peers hung up. Non-blocking.
  void Poll() EXCLUDES(mu_);

  // Ends sessions whose gRPC descriptor was closed or reused (checked by
  // inode). Run periodically; cheap.
  void Sweep() EXCLUDES(mu_);

  // Ends every session (daemon shutdown).
  void Clear() EXCLUDES(mu_);

  uint64_t total() const { return total_.load(std::memory_order_relaxed); }
  uint64_t active() const EXCLUDES(mu_);

 private:
  struct Entry {
    Peer peer;
    arch::ScopedFd dup_fd;  // keeps the socket alive for EPOLLRDHUP
    ino_t inode = 0;
  };
  // Removes the entry under mu_ and returns it for the disconnect callback.
  std::optional<Peer> EraseLocked(int grpc_fd) REQUIRES(mu_);
  // Runs the disconnect callback; never under mu_.
  void Notify(const std::vector<Peer>& ended) EXCLUDES(mu_);

  arch::ScopedFd epoll_fd_;  // set in the constructor, then only read
  // A leaf lock: nothing is called while it is held.
  mutable Mutex mu_;
  std::unordered_map<int, Entry> by_fd_ GUARDED_BY(mu_);
  uint64_t next_session_ GUARDED_BY(mu_) = 1;
  std::atomic<uint64_t> total_{0};
  // Set once before the first connection (OnDisconnect), then only read.
  DisconnectFn on_disconnect_;
};

// Parses "fd:N" as gRPC reports a connection made from a descriptor.
std::optional<int> ParseFdPeer(std::string_view grpc_peer);

}  // namespace hwwatch::daemon
