// The systemd units, checked with systemd's own tools, and socket
// activation of the real daemon.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "client/client.h"
#include "tests/support/process.h"

namespace hwwatch {
namespace {

using testing::RunCommand;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string UnitDir() { return std::string(HWWATCH_UNIT_DIR); }

// A copy of the units whose ExecStart points at this build's binary, so
// that `verify` can check the executable exists.
class Units {
 public:
  Units() {
    std::string service = Read(UnitDir() + "/hwwatchd.service");
    service = std::regex_replace(service, std::regex("ExecStart=\\S+/hwwatchd"),
                                 "ExecStart=" + testing::BinDir() + "/hwwatchd");
    std::ofstream(dir_.File("hwwatchd.service")) << service;
    std::ofstream(dir_.File("hwwatchd.socket"))
        << Read(std::string(HWWATCH_SOURCE_UNIT_DIR) + "/hwwatchd.socket");
  }
  std::string service() const { return dir_.File("hwwatchd.service"); }
  std::string socket() const { return dir_.File("hwwatchd.socket"); }

 private:
  testing::TempDir dir_;
};

TEST(SystemdUnits, VerifyPrintsNothing) {
  Units u;
  auto r = RunCommand({"/usr/bin/systemd-analyze", "verify", u.service(), u.socket()},
                      std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

TEST(SystemdUnits, SecurityExposureAtMost2_5) {
  Units u;
  auto r = RunCommand({"/usr/bin/systemd-analyze", "security", "--offline=yes", u.service()},
                      std::chrono::seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("Overall exposure level for \\S+: ([0-9.]+)")))
      << r.out;
  double exposure = std::stod(m[1]);
  EXPECT_LE(exposure, 2.5) << r.out;
}

TEST(SystemdUnits, ServiceKeepsOnlyThePrivilegesItNeeds) {
  std::string s = Read(UnitDir() + "/hwwatchd.service");
  EXPECT_NE(s.find("Type=notify"), std::string::npos);
  // CAP_SYS_ADMIN: perf_event_open under Debian's perf_event_paranoid=3.
  EXPECT_NE(
      s.find(
          "CapabilityBoundingSet=CAP_SYS_PTRACE CAP_PERFMON CAP_IPC_LOCK CAP_BPF CAP_SYS_ADMIN\n"),
      std::string::npos);
  // bpf(2) is in the denied @privileged set: allowed again after it.
  const size_t deny = s.find("SystemCallFilter=~@privileged"),
               bpf = s.find("SystemCallFilter=bpf\n");
  ASSERT_NE(bpf, std::string::npos);
  ASSERT_NE(deny, std::string::npos);
  EXPECT_GT(bpf, deny);
  EXPECT_NE(s.find("RestrictAddressFamilies=AF_UNIX\n"), std::string::npos);
  EXPECT_NE(s.find("SystemCallFilter=@system-service @debug\n"), std::string::npos);
  EXPECT_NE(s.find("NoNewPrivileges=yes"), std::string::npos);
  EXPECT_NE(s.find("ProtectSystem=strict"), std::string::npos);
  EXPECT_NE(s.find("ProtectHome=read-only"), std::string::npos);
  EXPECT_NE(s.find("Restart=on-failure"), std::string::npos);
}

// Under systemd, journald reads each stderr line's "<N>" syslog priority.
TEST(Journal, UnderSystemdEveryLogLineStartsWithItsPriority) {
  testing::TempDir dir;
  auto r =
      testing::RunCommand({"/usr/bin/timeout", "-s", "TERM", "2", testing::BinDir() + "/hwwatchd",
                           "--socket", dir.File("d.sock"), "--log-level", "debug"},
                          std::chrono::seconds(20), {"JOURNAL_STREAM=8:1234"});
  ASSERT_FALSE(r.timed_out);
  std::istringstream lines(r.err);
  std::string line;
  int info = 0, debug = 0, other = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("<6>", 0) == 0) {
      ++info;
    } else if (line.rfind("<7>", 0) == 0) {
      ++debug;
    } else {
      ++other;
      ADD_FAILURE() << "a line without a priority: " << line;
    }
  }
  EXPECT_GT(info, 0) << r.err;
  EXPECT_GT(debug, 0) << r.err;
  EXPECT_NE(r.err.find("<6>listening on"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(SocketActivation, DaemonServesAnInheritedSocket) {
  // systemd-socket-activate listens, then starts hwwatchd on the first
  // connection with LISTEN_FDS=1, as the .socket unit would.
  testing::DaemonProcess d({"/usr/bin/systemd-socket-activate", "-l", "{socket}"}, {});
  ASSERT_TRUE(d.running()) << d.Log();
  auto c = client::Client::Connect(d.socket(), std::chrono::seconds(10));
  ASSERT_TRUE(c) << c.error().ToString() << "\n" << d.Log();
  auto st = c.value()->Stats();
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(st->caller().pid(), getpid());
  // The readiness probe of DaemonProcess and this client: both came in
  // through the inherited socket.
  EXPECT_EQ(st->connections_total(), 2u);
  EXPECT_NE(d.Log().find("listening on"), std::string::npos) << d.Log();
}

}  // namespace
}  // namespace hwwatch
