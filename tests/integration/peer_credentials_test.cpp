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

  pid_t child = -1;
  const auto got = testing::RunAs(
      *nobody, Seen{},
      [&](Seen& seen) {
        auto c = client::Client::Connect(d.socket());
        if (c) {
          auto st = c.value()->Stats();
          if (st) {
            seen = Seen{1, st->caller().uid(), st->caller().gid(), st->caller().pid()};
          }
        }
      },
      &child);
  ASSERT_TRUE(got) << "the child as nobody sent no result";
  const Seen& seen = *got;
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
