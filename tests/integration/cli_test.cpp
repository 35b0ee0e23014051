// The real hwwatchd on a temporary socket, driven by the real hwwatch CLI.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <filesystem>

#include "arch/capabilities.h"
#include "hwwatch/v1/hwwatch.pb.h"
#include "tests/support/cli.h"
#include "tests/support/process.h"

namespace hwwatch {
namespace {

using testing::BinDir;
using testing::Cli;
using testing::CommandResult;
using testing::DaemonProcess;
using testing::ParseJson;
using testing::RunCommand;

TEST(CliCaps, JsonReportsThisHostFieldByField) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  CommandResult r = Cli(d.socket(), {"--json", "caps"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One JSON document on one line.
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  auto caps = ParseJson<v1::Capabilities>(r.out);

  utsname u{};
  ASSERT_EQ(uname(&u), 0);
  EXPECT_EQ(caps.kernel_release(), u.release);
  EXPECT_EQ(caps.cpus(), arch::PossibleCpus());
  EXPECT_GT(caps.cpus(), 0u);
  EXPECT_FALSE(caps.daemon_version().empty());
  // The self-test ran for both backends. Whether the hardware fires
  // depends on the host (some hypervisors drop debug exceptions), but as
  // root both backends must at least be armable.
  ASSERT_EQ(caps.self_test_size(), 2);
  EXPECT_NE(caps.self_test(0).backend(), caps.self_test(1).backend());
  for (const auto& t : caps.self_test()) {
    EXPECT_TRUE(t.outcome() == v1::SelfTestResult::FIRES ||
                t.outcome() == v1::SelfTestResult::NEVER_FIRES)
        << t.ShortDebugString();
    EXPECT_FALSE(t.detail().empty());
  }
  EXPECT_EQ(caps.backends_size(), 2);
#if defined(__x86_64__)
  EXPECT_EQ(caps.arch(), v1::ARCH_X86_64);
  ASSERT_EQ(caps.pools_size(), 1);
  const auto& pool = caps.pools(0);
  EXPECT_EQ(pool.slots(), 4u);
  EXPECT_TRUE(pool.mixed());
  ASSERT_EQ(pool.types_size(), 2);
  EXPECT_NE(pool.types(0), pool.types(1));
  bool saw_write = false, saw_rw = false, saw_exec = false;
  for (const auto& rule : caps.access_rules()) {
    EXPECT_NE(rule.access(), v1::ACCESS_READ) << "x86 has no read-only watch";
    if (rule.access() == v1::ACCESS_EXECUTE) {
      saw_exec = true;
      continue;
    }
    saw_write |= rule.access() == v1::ACCESS_WRITE;
    saw_rw |= rule.access() == v1::ACCESS_READ_WRITE;
    EXPECT_TRUE(rule.naturally_aligned());
    EXPECT_EQ(std::vector<uint32_t>(rule.lengths().begin(), rule.lengths().end()),
              (std::vector<uint32_t>{1, 2, 4, 8}));
  }
  EXPECT_TRUE(saw_write && saw_rw && saw_exec);
  EXPECT_EQ(caps.max_watch_length(), 32u);
#endif
}

TEST(CliCaps, HumanSummaryNamesArchAndPool) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  CommandResult r = Cli(d.socket(), {"caps"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(std::string(arch::ArchName(arch::kHostArch))), std::string::npos) << r.out;
#if defined(__x86_64__)
  EXPECT_NE(r.out.find("4 mixed"), std::string::npos) << r.out;
#endif
}

TEST(CliCaps, SocketFromEnvironment) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  CommandResult r = RunCommand({BinDir() + "/hwwatch", "--json", "caps"}, std::chrono::seconds(20),
                               {"HWWATCH_SOCKET=" + d.socket()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(ParseJson<v1::Capabilities>(r.out).arch(), v1::ARCH_UNSPECIFIED);
}

TEST(CliErrors, MissingSocketFailsFastWithOneLine) {
  testing::TempDir dir;
  const std::string sock = dir.File("nobody-here.sock");
  CommandResult r = Cli(sock, {"caps"});
  ASSERT_FALSE(r.timed_out) << "the CLI hung on a missing socket";
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(sock), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
}

TEST(CliErrors, DeadDaemonSocketFailsFast) {
  // A daemon killed with SIGKILL leaves its socket file behind.
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  kill(d.pid(), SIGKILL);
  d.Terminate();
  ASSERT_TRUE(std::filesystem::exists(d.socket()));
  CommandResult r = Cli(d.socket(), {"--json", "caps"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
}

TEST(CliErrors, UnknownCommandIsUsageError) {
  CommandResult r = RunCommand({BinDir() + "/hwwatch", "frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(Daemon, SigtermRemovesSocketAndExitsZero) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  const std::string sock = d.socket();
  ASSERT_TRUE(std::filesystem::exists(sock));
  EXPECT_EQ(d.Terminate(), 0);
  EXPECT_FALSE(std::filesystem::exists(sock));
}

TEST(Daemon, ReplacesStaleSocketButNotALiveOne) {
  DaemonProcess first;
  ASSERT_TRUE(first.running()) << first.Log();
  // A second daemon on the same path must refuse: someone answers there.
  CommandResult r =
      RunCommand({BinDir() + "/hwwatchd", "--socket", first.socket()}, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already listening"), std::string::npos) << r.err;
  // The first one still serves.
  EXPECT_EQ(Cli(first.socket(), {"caps"}).exit_code, 0);
}

TEST(Daemon, SocketModeIsApplied) {
  DaemonProcess d({"--socket-mode", "0660"});
  ASSERT_TRUE(d.running()) << d.Log();
  auto perms = std::filesystem::status(d.socket()).permissions();
  EXPECT_EQ(static_cast<unsigned>(perms) & 0777u, 0660u);
}

TEST(Daemon, BadSocketModeIsRefused) {
  CommandResult r =
      RunCommand({BinDir() + "/hwwatchd", "--socket", "/tmp/x.sock", "--socket-mode", "rw-all"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("octal"), std::string::npos) << r.err;
}

TEST(CliStats, CountsCallsAndConnections) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  CommandResult before = Cli(d.socket(), {"--json", "stats"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  const uint64_t total0 = ParseJson<v1::StatsResponse>(before.out).connections_total();
  ASSERT_EQ(Cli(d.socket(), {"caps"}).exit_code, 0);
  ASSERT_EQ(Cli(d.socket(), {"caps"}).exit_code, 0);
  CommandResult r = Cli(d.socket(), {"--json", "stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto st = ParseJson<v1::StatsResponse>(r.out);
  EXPECT_EQ(st.calls().at("GetCapabilities"), 2u);
  EXPECT_EQ(st.calls().at("Stats"), 2u);
  EXPECT_EQ(st.calls().at("Reserve"), 0u);
  // Two caps connections and this one; each CLI run is one connection.
  EXPECT_EQ(st.connections_total(), total0 + 3);
  EXPECT_GE(st.connections_active(), 1u);
  EXPECT_EQ(st.caller().uid(), getuid());
}

}  // namespace
}  // namespace hwwatch
