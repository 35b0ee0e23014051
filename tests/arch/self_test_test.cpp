// The hardware self-test on this host: both backends must be able to arm a
// register (never `unavailable` as root), the answer must be `fires` or
// `never fires` (this host's hypervisor: never), and no child may be left.
#include "arch/self_test.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <iostream>

namespace hwwatch::arch {
namespace {

using namespace std::chrono_literals;

TEST(SelfTestNamesTest, Names) {
  EXPECT_EQ(BackendName(Backend::kPerf), "perf");
  EXPECT_EQ(BackendName(Backend::kPtrace), "ptrace");
  EXPECT_EQ(SelfTestOutcomeName(SelfTestOutcome::kFires), "fires");
  EXPECT_EQ(SelfTestOutcomeName(SelfTestOutcome::kNeverFires), "never fires");
  EXPECT_EQ(SelfTestOutcomeName(SelfTestOutcome::kUnavailable), "unavailable");
}

TEST(SelfTestKernelTest, BothBackendsArmAndReportConsistently) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<SelfTestResult> results = RunSelfTest(900ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  std::cout << "self-test took "
            << std::chrono::duration_cast<std::chrono::microseconds>(took).count() << " us\n";
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].backend, Backend::kPerf);
  EXPECT_EQ(results[1].backend, Backend::kPtrace);
  for (const SelfTestResult& r : results) {
    SCOPED_TRACE(std::string(BackendName(r.backend)));
    std::cout << BackendName(r.backend) << ": " << SelfTestOutcomeName(r.outcome) << " ("
              << r.detail << ")\n";
    ASSERT_NE(r.outcome, SelfTestOutcome::kUnavailable) << r.detail;
    EXPECT_EQ(r.writes, 5u);
    EXPECT_FALSE(r.detail.empty());
    if (r.outcome == SelfTestOutcome::kNeverFires) {
      EXPECT_EQ(r.hits, 0u);
    } else {
      EXPECT_GT(r.hits, 0u);
      EXPECT_LE(r.hits, r.writes);
    }
  }
  // Both backends use the same debug hardware: they agree on whether it
  // fires.
  EXPECT_EQ(results[0].outcome, results[1].outcome);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);  // every child was reaped
}

TEST(SelfTestKernelTest, ZeroBudgetIsUnavailableAndReapsChildren) {
  std::vector<SelfTestResult> results = RunSelfTest(0ms);
  ASSERT_EQ(results.size(), 2u);
  for (const SelfTestResult& r : results) {
    // With no time at all the child cannot be waited for; whatever the
    // outcome, the detail says something and no child is left behind.
    EXPECT_FALSE(r.detail.empty());
  }
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

}  // namespace
}  // namespace hwwatch::arch
