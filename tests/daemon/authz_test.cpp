#include "daemon/authz.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hwwatch::daemon {
namespace {

ProcCreds User(uid_t uid, pid_t pid) {
  ProcCreds c;
  c.pid = c.tgid = pid;
  c.ruid = c.euid = c.suid = uid;
  c.rgid = c.egid = c.sgid = uid;
  return c;
}

ProcCreds WithPtraceCap(ProcCreds c) {
  c.cap_eff |= uint64_t{1} << kCapSysPtrace;
  c.cap_prm |= uint64_t{1} << kCapSysPtrace;
  return c;
}

TEST(MayPtrace, KernelRules) {
  const ProcCreds alice = User(1000, 10), alice2 = User(1000, 11), bob = User(1001, 12);
  ProcCreds setuid_prog = User(1000, 13);
  setuid_prog.euid = setuid_prog.suid = 0;  // alice ran a setuid-root binary
  ProcCreds nondump = User(1000, 14);
  nondump.dumpable = false;
  ProcCreds capable_target = User(1000, 15);
  capable_target.cap_prm = uint64_t{1} << 12;  // CAP_NET_ADMIN
  const ProcCreds root = WithPtraceCap(User(0, 1));
  ProcCreds same_group = User(1001, 20);
  same_group.tgid = bob.tgid;

  struct Case {
    const char* what;
    ProcCreds caller, target;
    int scope;
    YamaRelation rel;
    bool allowed;
  };
  const Case cases[] = {
      {"same user", alice, alice2, 0, {}, true},
      {"other user", alice, bob, 0, {}, false},
      {"setuid program", alice, setuid_prog, 0, {}, false},
      {"non-dumpable", alice, nondump, 0, {}, false},
      {"target holds more capabilities", alice, capable_target, 0, {}, false},
      {"root with CAP_SYS_PTRACE: other user", root, bob, 0, {}, true},
      {"root: setuid", root, setuid_prog, 0, {}, true},
      {"root: non-dumpable", root, nondump, 0, {}, true},
      {"own thread group", bob, same_group, 3, {}, true},
      {"yama 1, not a descendant", alice, alice2, 1, {}, false},
      {"yama 1, descendant", alice, alice2, 1, {true, false}, true},
      {"yama 1, PR_SET_PTRACER", alice, alice2, 1, {false, true}, true},
      {"yama 1, root", root, alice2, 1, {}, true},
      {"yama 2, same user", alice, alice2, 2, {true, false}, false},
      {"yama 2, root", root, alice2, 2, {}, true},
      {"yama 3, root", root, alice2, 3, {}, false},
  };
  for (const Case& c : cases) {
    Decision d = MayPtrace(c.caller, c.target, c.scope, c.rel);
    EXPECT_EQ(d.allowed, c.allowed) << c.what << ": " << d.reason;
    EXPECT_FALSE(d.reason.empty()) << c.what;
  }
}

TEST(ParseProcStatus, ReadsIdsAndCapabilities) {
  auto c = ParseProcStatus(
      "Name:\tx\nTgid:\t7\nPid:\t8\nPPid:\t1\nUid:\t1000\t1001\t1002\t1003\n"
      "Gid:\t50\t51\t52\t53\nCapPrm:\t0000000000080000\nCapEff:\t0000000000080000\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->pid, 8);
  EXPECT_EQ(c->tgid, 7);
  EXPECT_EQ(c->ppid, 1);
  EXPECT_EQ(c->ruid, 1000u);
  EXPECT_EQ(c->euid, 1001u);
  EXPECT_EQ(c->suid, 1002u);
  EXPECT_EQ(c->sgid, 52u);
  EXPECT_TRUE(c->HasCap(kCapSysPtrace));
  EXPECT_FALSE(ParseProcStatus("Name:\tx\n"));
}

TEST(ReadProcCreds, SelfAndMissing) {
  auto self = ReadProcCreds(getpid());
  ASSERT_TRUE(self);
  EXPECT_EQ(self->pid, getpid());
  EXPECT_EQ(self->euid, geteuid());
  EXPECT_EQ(self->ppid, getppid());
  EXPECT_FALSE(ReadProcCreds(0x7ffffff0));
  EXPECT_TRUE(IsDescendant(getpid(), getppid()));
  EXPECT_FALSE(IsDescendant(getppid(), getpid()));
}

TEST(ReadProcCreds, SeesANonDumpableProcessOfAnotherUser) {
  ASSERT_EQ(geteuid(), 0u) << "needs root to switch uid";
  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t child = fork();
  if (child == 0) {
    if (setresgid(nobody->pw_gid, nobody->pw_gid, nobody->pw_gid) != 0 ||
        setresuid(nobody->pw_uid, nobody->pw_uid, nobody->pw_uid) != 0) {
      _exit(1);
    }
    prctl(PR_SET_DUMPABLE, 0);
    (void)!write(ready[1], "x", 1);
    pause();
    _exit(0);
  }
  char x;
  ASSERT_EQ(read(ready[0], &x, 1), 1);
  auto c = ReadProcCreds(child);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->euid, nobody->pw_uid);
  EXPECT_FALSE(c->dumpable);
  auto self = ReadProcCreds(getpid());
  ASSERT_TRUE(self);
  EXPECT_TRUE(self->dumpable);
}

}  // namespace
}  // namespace hwwatch::daemon
