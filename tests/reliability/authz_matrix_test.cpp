// R5: the authorization matrix. For every caller x target pair, the
// daemon's decision (Reserve on the target's thread) must equal what the
// kernel lets that same caller do with ptrace itself (PTRACE_SEIZE from a
// process with the caller's credentials).
//   callers: nobody, another user, nobody with CAP_SYS_PTRACE, root
//   targets: nobody's (dumpable), nobody's non-dumpable, a setuid-root
//            program started by nobody, another user's, root's, the
//            caller's own child
// Where the kernel has Yama, the matrix runs again under ptrace_scope 1 and
// 2 (restored afterwards), with and without PR_SET_PTRACER. PR_SET_PTRACER
// cannot be read from outside the process: the daemon treats it as unset,
// so those cases may be denied where the kernel allows (never the reverse);
// they are counted apart. This host's kernel has no Yama: the x86_64 VM
// (vm_x86_64_authz_yama) runs this same binary under Debian's kernel with
// HWWATCH_REQUIRE_YAMA=1, where a missing Yama is a failure.
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "arch/child_process.h"
#include "client/client.h"
#include "tests/support/process.h"
#include "tests/support/requests.h"

namespace hwwatch {
namespace {

using client::Client;
namespace v1 = ::hwwatch::v1;

constexpr uid_t kNobody = 65534;
constexpr uid_t kOther = 4242;  // a second unprivileged user

struct Creds {
  const char* name;
  uid_t ruid, euid, suid;
  bool cap_sys_ptrace = false;
  bool dumpable = true;
};

// Drops to `c` (from root): ids, no supplementary groups, capabilities
// cleared except CAP_SYS_PTRACE when asked. False on failure.
bool Become(const Creds& c) {
  if (setgroups(0, nullptr) != 0) return false;
  const gid_t g = c.ruid == 0 ? 0 : c.ruid;
  if (setresgid(g, g, g) != 0) return false;
  if (c.cap_sys_ptrace) prctl(PR_SET_KEEPCAPS, 1);
  if (setresuid(c.ruid, c.euid, c.suid) != 0) return false;
  if (c.euid != 0) {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2] = {};
    if (c.cap_sys_ptrace) {
      d[0].effective = d[0].permitted = 1u << CAP_SYS_PTRACE;
    }
    if (syscall(SYS_capset, &h, d) != 0) return false;
  }
  prctl(PR_SET_DUMPABLE, c.dumpable ? 1 : 0);
  return true;
}

// A target process with credentials `c`, sleeping; optionally allowing
// `tracer` through PR_SET_PTRACER (Yama).
class Target {
 public:
  Target(const Creds& c, pid_t allow = 0) {
    int p[2];
    if (pipe(p) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      char ok = Become(c) ? 1 : 0;
      if (allow != 0) prctl(PR_SET_PTRACER, allow);
      (void)!write(p[1], &ok, 1);
      for (;;) pause();
    }
    char ok = 0;
    (void)!read(p[0], &ok, 1);
    ok_ = ok == 1;
    close(p[0]);
    close(p[1]);
  }
  ~Target() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  bool ok() const { return ok_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

struct Verdict {
  int daemon = -1;  // 1 allowed, 0 denied, -1 could not ask
  int kernel = -1;
};

// In a child with the caller's credentials: the daemon's answer and the
// kernel's for `target` (0: the child's own child).
Verdict Ask(const std::string& socket, const Creds& caller, pid_t target) {
  int p[2];
  if (pipe(p) != 0) return {};
  const pid_t child = fork();
  if (child == 0) {
    Verdict v;
    if (Become(caller)) {
      pid_t own = 0;
      if (target == 0) {
        own = fork();
        if (own == 0) {
          for (;;) pause();
        }
        target = own;
      }
      if (auto c = Client::Connect(socket)) {
        auto res = c.value()->Reserve(testing::Request().Tid(target).At(0x10000, 8));
        if (res) {
          v.daemon = 1;
          (void)c.value()->Release(res->id());
        } else if (res.error().code == grpc::StatusCode::PERMISSION_DENIED) {
          v.daemon = 0;
        }
      }
      // Then the kernel (its attach ends when this process exits).
      if (ptrace(PTRACE_SEIZE, target, nullptr, nullptr) == 0) {
        v.kernel = 1;
        ptrace(PTRACE_DETACH, target, nullptr, nullptr);
      } else {
        v.kernel = errno == EPERM ? 0 : -1;
      }
      if (own > 0) {
        kill(own, SIGKILL);
        waitpid(own, nullptr, 0);
      }
    }
    (void)!write(p[1], &v, sizeof v);
    _exit(0);
  }
  Verdict v;
  if (read(p[0], &v, sizeof v) != static_cast<ssize_t>(sizeof v)) v = {};
  waitpid(child, nullptr, 0);
  close(p[0]);
  close(p[1]);
  return v;
}

bool YamaPresent() { return std::ifstream("/proc/sys/kernel/yama/ptrace_scope").good(); }

int ReadScope() {
  std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
  int s = -1;
  in >> s;
  return s;
}

void WriteScope(int s) { std::ofstream("/proc/sys/kernel/yama/ptrace_scope") << s; }

TEST(AuthzMatrix, TheDaemonDecidesAsTheKernelWould) {
  ASSERT_EQ(geteuid(), 0u);
  const Creds callers[] = {
      {"nobody", kNobody, kNobody, kNobody},
      {"other user", kOther, kOther, kOther},
      {"nobody + CAP_SYS_PTRACE", kNobody, kNobody, kNobody, true},
      {"root", 0, 0, 0},
  };
  const Creds targets[] = {
      {"nobody's", kNobody, kNobody, kNobody},
      {"nobody's non-dumpable", kNobody, kNobody, kNobody, false, false},
      {"setuid-root run by nobody", kNobody, 0, 0},
      {"other user's", kOther, kOther, kOther},
      {"root's", 0, 0, 0},
  };
  if (std::getenv("HWWATCH_REQUIRE_YAMA") != nullptr) {
    ASSERT_TRUE(YamaPresent()) << "HWWATCH_REQUIRE_YAMA is set but this kernel has no Yama";
  }
  testing::DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  std::vector<int> scopes = {-1};  // -1: no Yama (or as it is)
  const int original = YamaPresent() ? ReadScope() : -1;
  if (YamaPresent()) scopes = {0, 1, 2};
  int cases = 0, agree = 0, conservative = 0;
  std::string disagreements;
  for (int scope : scopes) {
    if (scope >= 0) {
      WriteScope(scope);
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the daemon's cache
    }
    for (bool declared : {false, true}) {
      if (declared && scope != 1) continue;  // PR_SET_PTRACER matters in scope 1 only
      for (const Creds& t : targets) {
        for (const Creds& c : callers) {
          // PR_SET_PTRACER_ANY stands in for "this caller" (the caller's pid
          // is not known before it forks).
          Target target(t, declared ? static_cast<pid_t>(PR_SET_PTRACER_ANY) : 0);
          ASSERT_TRUE(target.ok()) << t.name;
          const Verdict v = Ask(d.socket(), c, target.pid());
          ASSERT_NE(v.kernel, -1) << c.name << " -> " << t.name << ": ptrace failed oddly";
          ASSERT_NE(v.daemon, -1) << c.name << " -> " << t.name << ": the daemon gave no verdict";
          ++cases;
          if (v.daemon == v.kernel) {
            ++agree;
          } else if (declared && v.kernel == 1 && v.daemon == 0) {
            ++conservative;
          } else {
            disagreements += std::string(c.name) + " -> " + t.name + " (scope " +
                             std::to_string(scope) + (declared ? ", PR_SET_PTRACER" : "") +
                             "): kernel " + (v.kernel ? "allows" : "denies") + ", daemon " +
                             (v.daemon ? "allows" : "denies") + "\n";
          }
        }
      }
      // The caller's own child.
      for (const Creds& c : callers) {
        const Verdict v = Ask(d.socket(), c, 0);
        ++cases;
        if (v.daemon == v.kernel && v.daemon != -1) {
          ++agree;
        } else {
          disagreements += std::string(c.name) + " -> own child: kernel " +
                           std::to_string(v.kernel) + ", daemon " + std::to_string(v.daemon) + "\n";
        }
      }
    }
  }
  if (original >= 0) WriteScope(original);
  std::printf("authz matrix: %d cases, %d agree, %d conservative (PR_SET_PTRACER), Yama %s\n",
              cases, agree, conservative,
              original >= 0 ? "scopes 0, 1, 2" : "absent on this kernel (scopes not run)");
  EXPECT_EQ(agree + conservative, cases) << disagreements;
  EXPECT_GE(cases, 24);
}

}  // namespace
}  // namespace hwwatch
