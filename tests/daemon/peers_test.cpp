#include "daemon/peers.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace hwwatch::daemon {
namespace {

TEST(ParseFdPeer, AcceptsOnlyFdForm) {
  EXPECT_EQ(ParseFdPeer("fd:8"), 8);
  EXPECT_EQ(ParseFdPeer("fd:0"), 0);
  EXPECT_EQ(ParseFdPeer("fd:"), std::nullopt);
  EXPECT_EQ(ParseFdPeer("fd:8x"), std::nullopt);
  EXPECT_EQ(ParseFdPeer("fd:-1"), std::nullopt);
  EXPECT_EQ(ParseFdPeer("unix:/run/x"), std::nullopt);
  EXPECT_EQ(ParseFdPeer("ipv4:127.0.0.1:5"), std::nullopt);
  EXPECT_EQ(ParseFdPeer(""), std::nullopt);
}

struct Pair {
  int server = -1, client = -1;
  Pair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    server = sv[0];
    client = sv[1];
  }
  ~Pair() {
    if (server >= 0) close(server);
    if (client >= 0) close(client);
  }
};

std::string FdPeer(int fd) { return "fd:" + std::to_string(fd); }

TEST(PeerRegistry, LooksUpCredentialsByDescriptor) {
  PeerRegistry reg;
  Pair a, b;
  uint64_t sa = reg.Add(a.server, {1000, 100, 42});
  uint64_t sb = reg.Add(b.server, {0, 0, 7});
  ASSERT_NE(sa, 0u);
  ASSERT_NE(sb, 0u);
  EXPECT_NE(sa, sb);
  auto pa = reg.Lookup(FdPeer(a.server));
  ASSERT_TRUE(pa);
  EXPECT_EQ(pa->session_id, sa);
  EXPECT_EQ(pa->creds.uid, 1000u);
  EXPECT_EQ(pa->creds.gid, 100u);
  EXPECT_EQ(pa->creds.pid, 42);
  EXPECT_EQ(reg.Lookup(FdPeer(b.server))->creds.pid, 7);
  EXPECT_FALSE(reg.Lookup("fd:9999"));
  EXPECT_EQ(reg.active(), 2u);
  EXPECT_EQ(reg.total(), 2u);
}

TEST(PeerRegistry, RefusesWhatIsNotASocket) {
  PeerRegistry reg;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  EXPECT_EQ(reg.Add(p[0], {}), 0u);
  close(p[0]);
  close(p[1]);
  EXPECT_EQ(reg.active(), 0u);
}

TEST(PeerRegistry, PeerHangupEndsSessionEvenWhileServerFdStaysOpen) {
  PeerRegistry reg;
  std::vector<uint64_t> ended;
  reg.OnDisconnect([&](const Peer& p) { ended.push_back(p.session_id); });
  Pair a, b;
  uint64_t sa = reg.Add(a.server, {1, 1, 1});
  reg.Add(b.server, {2, 2, 2});
  reg.Poll();
  EXPECT_TRUE(ended.empty());
  close(a.client);
  a.client = -1;
  reg.Poll();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0], sa);
  EXPECT_FALSE(reg.Lookup(FdPeer(a.server)));
  EXPECT_TRUE(reg.Lookup(FdPeer(b.server)));
}

TEST(PeerRegistry, HangupSeenAfterServerClosedItsDescriptor) {
  // gRPC may close its descriptor first; the registry's duplicate keeps
  // the socket so the hang-up is still reported.
  PeerRegistry reg;
  int ended = 0;
  reg.OnDisconnect([&](const Peer&) { ++ended; });
  Pair a;
  reg.Add(a.server, {1, 1, 1});
  close(a.server);
  a.server = -1;
  close(a.client);
  a.client = -1;
  reg.Poll();
  EXPECT_EQ(ended, 1);
  EXPECT_EQ(reg.active(), 0u);
}

TEST(PeerRegistry, SweepEndsSessionsWhoseDescriptorWasClosedOrReused) {
  PeerRegistry reg;
  std::vector<uint64_t> ended;
  reg.OnDisconnect([&](const Peer& p) { ended.push_back(p.session_id); });
  Pair a;
  const int num = a.server;
  uint64_t sa = reg.Add(num, {1, 1, 1});
  // gRPC closes its descriptor while the peer keeps its end open.
  close(a.server);
  a.server = -1;
  // The number is reused by an unrelated socket.
  Pair other;
  ASSERT_EQ(other.server, num);
  reg.Sweep();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0], sa);
  EXPECT_FALSE(reg.Lookup(FdPeer(num)));
}

TEST(PeerRegistry, AddOnReusedNumberEndsTheOldSession) {
  PeerRegistry reg;
  std::vector<uint64_t> ended;
  reg.OnDisconnect([&](const Peer& p) { ended.push_back(p.session_id); });
  Pair a;
  const int num = a.server;
  uint64_t sa = reg.Add(num, {1, 1, 1});
  close(a.server);
  a.server = -1;
  Pair b;
  ASSERT_EQ(b.server, num);
  uint64_t sb = reg.Add(b.server, {2, 2, 2});
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0], sa);
  EXPECT_EQ(reg.Lookup(FdPeer(num))->session_id, sb);
  EXPECT_EQ(reg.Lookup(FdPeer(num))->creds.uid, 2u);
}

TEST(PeerRegistry, ClearEndsEverySession) {
  PeerRegistry reg;
  int ended = 0;
  reg.OnDisconnect([&](const Peer&) { ++ended; });
  Pair a, b, c;
  reg.Add(a.server, {});
  reg.Add(b.server, {});
  reg.Add(c.server, {});
  reg.Clear();
  EXPECT_EQ(ended, 3);
  EXPECT_EQ(reg.active(), 0u);
  EXPECT_EQ(reg.total(), 3u);
}

}  // namespace
}  // namespace hwwatch::daemon
