// client/symbols.h against running programs built by this test's CMake:
// the addresses it finds must be where the program itself says its
// globals are (PIE: after the load bias), in the executable and in a
// shared library; code addresses read back as function+offset (file:line);
// a stripped executable gets a clear error.
#include "client/symbols.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/support/targets.h"

namespace hwwatch {
namespace {

using client::ProcessSymbols;
using client::Symbol;

std::unique_ptr<ProcessSymbols> Open(pid_t pid) {
  auto s = ProcessSymbols::Open(pid);
  if (auto* err = std::get_if<std::string>(&s)) {
    ADD_FAILURE() << *err;
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<ProcessSymbols>>(s));
}

Symbol Find(const ProcessSymbols& s, const std::string& spec) {
  auto r = s.Find(spec);
  if (auto* err = std::get_if<std::string>(&r)) {
    ADD_FAILURE() << spec << ": " << *err;
    return {};
  }
  return std::get<Symbol>(r);
}

class Symbols : public ::testing::TestWithParam<std::string> {};

TEST_P(Symbols, FindsGlobalsWhereTheProcessHasThem) {
  testing::SymbolTarget t(GetParam());
  ASSERT_NE(t.counter, 0u) << "the target did not start";
  auto s = Open(t.pid());
  ASSERT_TRUE(s);
  const Symbol counter = Find(*s, "counter");
  EXPECT_EQ(counter.address, t.counter);
  EXPECT_EQ(counter.size, 4u);
  EXPECT_FALSE(counter.function);
  EXPECT_NE(counter.module.find("sym_target_" + GetParam()), std::string::npos) << counter.module;
  const Symbol block = Find(*s, "block");
  EXPECT_EQ(block.address, t.block);
  EXPECT_EQ(block.size, 32u);
  // In the shared library, by its name or by any library.
  EXPECT_EQ(Find(*s, "libsym_lib:lib_counter").address, t.lib_counter);
  EXPECT_EQ(Find(*s, "lib_counter").address, t.lib_counter);
  EXPECT_EQ(Find(*s, "lib_counter").size, sizeof(long));
  const Symbol fn = Find(*s, "count_up");
  EXPECT_EQ(fn.address, t.count_up);
  EXPECT_TRUE(fn.function);
  // Code addresses back to names, with the source line (built with -g).
  const std::string at = s->Describe(t.count_up + 4);
  EXPECT_EQ(at.rfind("count_up+0x4 (sym_target.c:", 0), 0u) << at;
  EXPECT_EQ(s->Describe(t.count_up).rfind("count_up (sym_target.c:", 0), 0u);
  EXPECT_EQ(s->Describe(t.counter + 2), "counter+0x2");
}

INSTANTIATE_TEST_SUITE_P(PieAndNot, Symbols, ::testing::Values("pie", "nopie"));

TEST(SymbolsErrors, AStrippedExecutableSaysSo) {
  testing::SymbolTarget t("stripped");
  ASSERT_NE(t.counter, 0u) << "the target did not start";
  auto s = Open(t.pid());
  ASSERT_TRUE(s);
  auto r = s->Find("counter");
  ASSERT_TRUE(std::holds_alternative<std::string>(r)) << "found in a stripped binary?";
  EXPECT_NE(std::get<std::string>(r).find("stripped"), std::string::npos)
      << std::get<std::string>(r);
  // The library keeps its symbols.
  auto lib = s->Find("libsym_lib:lib_counter");
  ASSERT_TRUE(std::holds_alternative<Symbol>(lib));
  EXPECT_EQ(std::get<Symbol>(lib).address, t.lib_counter);
}

TEST(SymbolsErrors, UnknownNamesAndLibrariesAreExplained) {
  testing::SymbolTarget t("pie");
  ASSERT_NE(t.counter, 0u);
  auto s = Open(t.pid());
  ASSERT_TRUE(s);
  auto none = s->Find("no_such_symbol");
  ASSERT_TRUE(std::holds_alternative<std::string>(none));
  EXPECT_NE(std::get<std::string>(none).find("no symbol 'no_such_symbol'"), std::string::npos);
  EXPECT_EQ(std::get<std::string>(none).find("stripped"), std::string::npos)
      << "the executable is not stripped: " << std::get<std::string>(none);
  auto nolib = s->Find("libnothere:x");
  ASSERT_TRUE(std::holds_alternative<std::string>(nolib));
  EXPECT_NE(std::get<std::string>(nolib).find("libnothere"), std::string::npos);
  auto gone = ProcessSymbols::Open(999999999);
  EXPECT_TRUE(std::holds_alternative<std::string>(gone));
}

}  // namespace
}  // namespace hwwatch
