// Every hwwatch command against the real daemon, human and JSON output
// parsed back: reserve by symbol (a 32-byte global takes 4 x86 registers),
// list, slots, release, watch, selftest, stats, caps; --help with examples
// on each; clear one-line errors with the documented exit status.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hwwatch/v1/hwwatch.pb.h"
#include "tests/support/cli.h"
#include "tests/support/process.h"
#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using testing::Cli;
using testing::CommandResult;
using testing::DaemonProcess;
using testing::ParseJson;
using testing::SymbolTarget;

std::string Hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

TEST(CliCommands, ReserveBySymbolListSlotsRelease) {
  SymbolTarget target("pie");
  ASSERT_TRUE(target.started());
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  const std::string pid = std::to_string(target.pid());
  // Held for 6 s in the background (released here first).
  auto held = std::async(std::launch::async, [&] {
    return Cli(d.socket(), {"--json", "reserve", "--pid", pid, "--symbol", "block", "--hold", "6"});
  });
  v1::ListResponse list;
  for (int i = 0; i < 100 && list.reservations_size() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CommandResult l = Cli(d.socket(), {"--json", "list"});
    ASSERT_EQ(l.exit_code, 0) << l.err;
    list = ParseJson<v1::ListResponse>(l.out);
  }
  ASSERT_EQ(list.reservations_size(), 1) << "reserve --symbol block did not show up in list";
  const v1::Reservation& r = list.reservations(0);
  EXPECT_EQ(r.watch().address(), target.block) << "the symbol resolved elsewhere";
  EXPECT_EQ(r.watch().length(), 32u) << "the length comes from the symbol's size";
  EXPECT_EQ(r.watch().symbol(), "block");
#if defined(__x86_64__)
  EXPECT_EQ(r.weight(), 4u) << "32 aligned bytes take four 8-byte x86 registers";
  EXPECT_EQ(r.registers_size(), 4);
#endif
  // Human list: the address, size and name.
  CommandResult human = Cli(d.socket(), {"list"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find(Hex(target.block) + "+32 (block)"), std::string::npos) << human.out;
  // Slots: the task holds the registers on every CPU.
  CommandResult slots = Cli(d.socket(), {"--json", "slots"});
  ASSERT_EQ(slots.exit_code, 0) << slots.err;
  auto s = ParseJson<v1::SlotsResponse>(slots.out);
  bool seen = false;
  for (const auto& t : s.tasks()) {
    if (t.tid() == target.pid()) {
      seen = true;
      EXPECT_EQ(t.all_cpus(), r.weight());
    }
  }
  EXPECT_TRUE(seen) << slots.out;
  CommandResult table = Cli(d.socket(), {"slots"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("task " + pid), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("sym_target_pie"), std::string::npos) << "name the task: " << table.out;
  // Release by id; the holder then finds it gone and says so.
  CommandResult rel = Cli(d.socket(), {"release", std::to_string(r.id())});
  EXPECT_EQ(rel.exit_code, 0) << rel.err;
  CommandResult after = Cli(d.socket(), {"--json", "list"});
  EXPECT_EQ(ParseJson<v1::ListResponse>(after.out).reservations_size(), 0) << after.out;
  CommandResult again = Cli(d.socket(), {"release", std::to_string(r.id())});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("no reservation"), std::string::npos) << again.err;
  CommandResult holder = held.get();
  auto printed = ParseJson<v1::Reservation>(holder.out);
  EXPECT_EQ(printed.id(), r.id());
  EXPECT_EQ(holder.exit_code, 1) << "its reservation was released under it: " << holder.err;
}

TEST(CliCommands, WatchBySymbolEndsCleanlyAtItsTimeout) {
  SymbolTarget target("nopie");
  ASSERT_TRUE(target.started());
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  const std::string pid = std::to_string(target.pid());
  // The target is blocked on its stdin: no hits, whatever the hardware.
  CommandResult w =
      Cli(d.socket(), {"watch", "--pid", pid, "--symbol", "counter", "--timeout", "0.5"});
  EXPECT_EQ(w.exit_code, 0) << w.err;
  EXPECT_NE(w.err.find("watching pid " + pid + " counter at " + Hex(target.counter) + "+4"),
            std::string::npos)
      << w.err;
  EXPECT_NE(w.err.find("0 hit(s)"), std::string::npos) << w.err;
  CommandResult j = Cli(d.socket(), {"--json", "watch", "--pid", pid, "--symbol",
                                     "libsym_lib:lib_counter", "--timeout", "0.5"});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  std::istringstream lines(j.out);
  for (std::string line; std::getline(lines, line);) ParseJson<v1::Event>(line);
  CommandResult l = Cli(d.socket(), {"--json", "list"});
  EXPECT_EQ(ParseJson<v1::ListResponse>(l.out).reservations_size(), 0)
      << "watch releases what it reserved";
}

TEST(CliCommands, SymbolsThatDoNotResolveAreUsageErrors) {
  SymbolTarget stripped("stripped");
  ASSERT_TRUE(stripped.started());
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  CommandResult none = Cli(d.socket(), {"reserve", "--pid", std::to_string(stripped.pid()),
                                        "--symbol", "no_such_thing", "--hold", "0"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("no symbol 'no_such_thing'"), std::string::npos) << none.err;
  EXPECT_EQ(std::count(none.err.begin(), none.err.end(), '\n'), 1) << "one line: " << none.err;
  CommandResult gone = Cli(d.socket(), {"reserve", "--pid", std::to_string(stripped.pid()),
                                        "--symbol", "counter", "--hold", "0"});
  EXPECT_EQ(gone.exit_code, 2);
  EXPECT_NE(gone.err.find("stripped"), std::string::npos) << gone.err;
  CommandResult both =
      Cli(d.socket(), {"reserve", "--pid", "1", "0x1000", "--symbol", "counter", "--hold", "0"});
  EXPECT_EQ(both.exit_code, 2) << "ADDR and --symbol exclude each other";
}

TEST(CliCommands, EveryCommandHasHelpWithExamplesAndJson) {
  DaemonProcess d;
  ASSERT_TRUE(d.running()) << d.Log();
  for (const char* cmd :
       {"caps", "stats", "selftest", "reserve", "release", "list", "slots", "watch"}) {
    CommandResult h = Cli(d.socket(), {cmd, "--help"});
    EXPECT_EQ(h.exit_code, 0) << cmd;
    EXPECT_NE(h.out.find("Example"), std::string::npos) << cmd << " --help has no examples";
  }
  ParseJson<v1::Capabilities>(Cli(d.socket(), {"--json", "caps"}).out);
  ParseJson<v1::StatsResponse>(Cli(d.socket(), {"--json", "stats"}).out);
  ParseJson<v1::ListResponse>(Cli(d.socket(), {"--json", "list"}).out);
  ParseJson<v1::SlotsResponse>(Cli(d.socket(), {"--json", "slots"}).out);
  // selftest: its exit status says whether every backend's registers fired.
  CommandResult st = Cli(d.socket(), {"--json", "selftest"});
  auto caps = ParseJson<v1::Capabilities>(st.out);
  ASSERT_EQ(caps.self_test_size(), 2) << st.out;
  bool all_fire = true;
  for (const auto& t : caps.self_test()) all_fire &= t.outcome() == v1::SelfTestResult::FIRES;
  EXPECT_EQ(st.exit_code, all_fire ? 0 : 1);
  CommandResult human = Cli(d.socket(), {"selftest"});
  EXPECT_EQ(human.exit_code, st.exit_code);
  EXPECT_EQ(human.out.rfind("perf ", 0), 0u) << human.out;
  EXPECT_NE(human.out.find("\nptrace "), std::string::npos) << human.out;
}

}  // namespace
}  // namespace hwwatch
