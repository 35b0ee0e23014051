// A client running under another uid is seen as that uid by the daemon.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "tests/support/process.h"

namespace hwwatch {
namespace {

struct Seen {
  int ok = 0;
  uint32_t uid = 0, gid = 0;
  int32_t pid = 0;
};

TEST(PeerCredentials, DaemonSeesTheCallersUidGidAndPid) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root to switch to another uid";
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    Seen seen;
    if (testing::DropTo(*nobody)) {
      auto c = client::Client::Connect(d.socket());
      if (c) {
        auto st = c.value()->Stats();
        if (st) {
          seen = Seen{1, st->caller().uid(), st->caller().gid(), st->caller().pid()};
        }
      }
    }
    (void)!write(p[1], &seen, sizeof(seen));
    _exit(0);
  }
  close(p[1]);
  Seen seen;
  ASSERT_EQ(read(p[0], &seen, sizeof(seen)), static_cast<ssize_t>(sizeof(seen)));
  close(p[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_EQ(seen.ok, 1) << "the child could not call the daemon as nobody";
  EXPECT_EQ(seen.uid, nobody->pw_uid);
  EXPECT_EQ(seen.gid, nobody->pw_gid);
  EXPECT_EQ(seen.pid, child);

  // And root is seen as root, on its own session.
  auto c = client::Client::Connect(d.socket());
  ASSERT_TRUE(c) << c.error().ToString();
  auto st = c.value()->Stats();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(st->caller().uid(), 0u);
  EXPECT_EQ(st->caller().pid(), getpid());
}

}  // namespace
}  // namespace hwwatch
