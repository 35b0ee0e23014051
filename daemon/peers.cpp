#include "daemon/peers.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>

namespace hwwatch::daemon {

namespace {

ino_t InodeOf(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return 0;
  return st.st_ino;
}

}  // namespace

std::optional<int> ParseFdPeer(std::string_view grpc_peer) {
  constexpr std::string_view kPrefix = "fd:";
  if (grpc_peer.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  std::string_view num = grpc_peer.substr(kPrefix.size());
  int fd = -1;
  auto r = std::from_chars(num.data(), num.data() + num.size(), fd);
  if (r.ec != std::errc() || r.ptr != num.data() + num.size() || fd < 0) return std::nullopt;
  return fd;
}

PeerRegistry::PeerRegistry() : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {}

PeerRegistry::~PeerRegistry() {
  // No callbacks from a destructor: whoever they would reach may be gone.
  on_disconnect_ = nullptr;
  Clear();
}

uint64_t PeerRegistry::Add(int grpc_fd, const PeerCredentials& creds) {
  const ino_t inode = InodeOf(grpc_fd);
  arch::ScopedFd dup_fd(fcntl(grpc_fd, F_DUPFD_CLOEXEC, 0));
  if (inode == 0 || !dup_fd) return 0;
  std::vector<Peer> ended;
  uint64_t id = 0;
  {
    MutexLock lock(mu_);
    if (auto old = EraseLocked(grpc_fd)) ended.push_back(*old);
    id = next_session_++;
    // Only hang-ups are of interest; gRPC reads the data through its own
    // descriptor, so EPOLLIN is deliberately not requested.
    epoll_event ev{};
    ev.events = EPOLLRDHUP;
    ev.data.u64 = (static_cast<uint64_t>(static_cast<uint32_t>(grpc_fd)) << 32) |
                  static_cast<uint32_t>(dup_fd.get());
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, dup_fd.get(), &ev) != 0) return 0;
    by_fd_[grpc_fd] = Entry{Peer{id, creds, grpc_fd}, std::move(dup_fd), inode};
  }
  total_.fetch_add(1, std::memory_order_relaxed);
  Notify(ended);
  return id;
}

std::optional<Peer> PeerRegistry::Lookup(std::string_view grpc_peer) const {
  auto fd = ParseFdPeer(grpc_peer);
  if (!fd) return std::nullopt;
  MutexLock lock(mu_);
  auto it = by_fd_.find(*fd);
  if (it == by_fd_.end()) return std::nullopt;
  return it->second.peer;
}

std::optional<Peer> PeerRegistry::EraseLocked(int grpc_fd) {
  auto it = by_fd_.find(grpc_fd);
  if (it == by_fd_.end()) return std::nullopt;
  Peer peer = it->second.peer;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second.dup_fd.get(), nullptr);
  by_fd_.erase(it);  // closes the duplicate
  return peer;
}

void PeerRegistry::Poll() {
  std::vector<Peer> ended;
  epoll_event events[64];
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events, 64, 0);
    if (n <= 0) break;
    MutexLock lock(mu_);
    for (int i = 0; i < n; ++i) {
      const int grpc_fd = static_cast<int>(events[i].data.u64 >> 32);
      const int dup_fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
      auto it = by_fd_.find(grpc_fd);
      // The entry may already be a newer session on a reused number.
      if (it == by_fd_.end() || it->second.dup_fd.get() != dup_fd) continue;
      if (auto p = EraseLocked(grpc_fd)) ended.push_back(*p);
    }
    if (n < 64) break;
  }
  Notify(ended);
}

void PeerRegistry::Sweep() {
  std::vector<Peer> ended;
  {
    MutexLock lock(mu_);
    std::vector<int> stale;
    for (const auto& [fd, e] : by_fd_) {
      if (InodeOf(fd) != e.inode) stale.push_back(fd);
    }
    for (int fd : stale) {
      if (auto p = EraseLocked(fd)) ended.push_back(*p);
    }
  }
  Notify(ended);
}

void PeerRegistry::Clear() {
  std::vector<Peer> ended;
  {
    MutexLock lock(mu_);
    while (!by_fd_.empty()) {
      if (auto p = EraseLocked(by_fd_.begin()->first)) ended.push_back(*p);
    }
  }
  Notify(ended);
}

uint64_t PeerRegistry::active() const {
  MutexLock lock(mu_);
  return by_fd_.size();
}

void PeerRegistry::Notify(const std::vector<Peer>& ended) {
  if (!on_disconnect_) return;
  for (const Peer& p : ended) on_disconnect_(p);
}

}  // namespace hwwatch::daemon
