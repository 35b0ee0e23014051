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

namespace hwwatch {
namespace {

using client::ProcessSymbols;
using client::Symbol;

// One of the sym_target_* programs, stopped (blocked on stdin) after it
// printed where its globals are.
class Target {
 public:
  explicit Target(const std::string& kind) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      const std::string bin =
          std::string(std::getenv("HWWATCH_BIN_DIR")) + "/../tests/sym_target_" + kind;
      execl(bin.c_str(), bin.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    FILE* from = fdopen(out[0], "r");
    void *counter = nullptr, *count_up = nullptr, *block = nullptr, *lib = nullptr;
    if (std::fscanf(from, "counter %p count_up %p block %p lib_counter %p", &counter, &count_up,
                    &block, &lib) == 4) {
      counter_ = reinterpret_cast<uint64_t>(counter);
      count_up_ = reinterpret_cast<uint64_t>(count_up);
      block_ = reinterpret_cast<uint64_t>(block);
      lib_counter_ = reinterpret_cast<uint64_t>(lib);
    }
    std::fclose(from);
  }
  ~Target() {
    close(to_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  uint64_t counter_ = 0, count_up_ = 0, block_ = 0, lib_counter_ = 0;

 private:
  pid_t pid_ = -1;
  int to_ = -1;
};

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
  Target t(GetParam());
  ASSERT_NE(t.counter_, 0u) << "the target did not start";
  auto s = Open(t.pid());
  ASSERT_TRUE(s);
  const Symbol counter = Find(*s, "counter");
  EXPECT_EQ(counter.address, t.counter_);
  EXPECT_EQ(counter.size, 4u);
  EXPECT_FALSE(counter.function);
  EXPECT_NE(counter.module.find("sym_target_" + GetParam()), std::string::npos) << counter.module;
  const Symbol block = Find(*s, "block");
  EXPECT_EQ(block.address, t.block_);
  EXPECT_EQ(block.size, 32u);
  // In the shared library, by its name or by any library.
  EXPECT_EQ(Find(*s, "libsym_lib:lib_counter").address, t.lib_counter_);
  EXPECT_EQ(Find(*s, "lib_counter").address, t.lib_counter_);
  EXPECT_EQ(Find(*s, "lib_counter").size, sizeof(long));
  const Symbol fn = Find(*s, "count_up");
  EXPECT_EQ(fn.address, t.count_up_);
  EXPECT_TRUE(fn.function);
  // Code addresses back to names, with the source line (built with -g).
  const std::string at = s->Describe(t.count_up_ + 4);
  EXPECT_EQ(at.rfind("count_up+0x4 (sym_target.c:", 0), 0u) << at;
  EXPECT_EQ(s->Describe(t.count_up_).rfind("count_up (sym_target.c:", 0), 0u);
  EXPECT_EQ(s->Describe(t.counter_ + 2), "counter+0x2");
}

INSTANTIATE_TEST_SUITE_P(PieAndNot, Symbols, ::testing::Values("pie", "nopie"));

TEST(SymbolsErrors, AStrippedExecutableSaysSo) {
  Target t("stripped");
  ASSERT_NE(t.counter_, 0u) << "the target did not start";
  auto s = Open(t.pid());
  ASSERT_TRUE(s);
  auto r = s->Find("counter");
  ASSERT_TRUE(std::holds_alternative<std::string>(r)) << "found in a stripped binary?";
  EXPECT_NE(std::get<std::string>(r).find("stripped"), std::string::npos)
      << std::get<std::string>(r);
  // The library keeps its symbols.
  auto lib = s->Find("libsym_lib:lib_counter");
  ASSERT_TRUE(std::holds_alternative<Symbol>(lib));
  EXPECT_EQ(std::get<Symbol>(lib).address, t.lib_counter_);
}

TEST(SymbolsErrors, UnknownNamesAndLibrariesAreExplained) {
  Target t("pie");
  ASSERT_NE(t.counter_, 0u);
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
