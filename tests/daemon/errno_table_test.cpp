// The one errno -> Code table, and what a kernel failure tells the caller
// when arming and when modifying.
#include <gtest/gtest.h>

#include <cerrno>

#include "daemon/error.h"

namespace hwwatch::daemon {
namespace {

TEST(CodeForErrno, EveryErrnoTheBackendsMeet) {
  const struct {
    int err;
    Code code;
  } table[] = {
      {ENOSPC, Code::kResourceExhausted},
      {ESRCH, Code::kNotFound},
      {EPERM, Code::kFailedPrecondition},
      {EBUSY, Code::kFailedPrecondition},
      {EAGAIN, Code::kFailedPrecondition},
      {EINVAL, Code::kInvalidArgument},
      {EIO, Code::kInternal},
      {EFAULT, Code::kInternal},
      {0, Code::kInternal},
  };
  for (const auto& row : table) {
    EXPECT_EQ(CodeForErrno(row.err), row.code) << "errno " << row.err;
  }
}

// Arming and modifying share the table: the code never depends on the step.
TEST(ProblemFromErrno, TheCodeComesFromTheTableAtEveryStep) {
  for (int err : {ENOSPC, ESRCH, EPERM, EBUSY, EAGAIN, EINVAL, EIO}) {
    const arch::Error e = arch::ErrnoError("perf_event_open", err);
    EXPECT_EQ(ProblemFromErrno(e, KernelStep::kArm, 7, 2).code, CodeForErrno(err)) << err;
    EXPECT_EQ(ProblemFromErrno(e, KernelStep::kModify, 7, 2).code, CodeForErrno(err)) << err;
  }
}

TEST(ProblemFromErrno, NoSpaceMeansHeldOutsideWithTheThreadAndWeight) {
  const Problem p = ProblemFromErrno(arch::ErrnoError("open", ENOSPC), KernelStep::kArm, 42, 3);
  ASSERT_TRUE(p.refusal.has_value());
  EXPECT_EQ(p.refusal->reason, Refusal::Reason::kHeldOutside);
  EXPECT_EQ(p.refusal->tid, 42);
  EXPECT_EQ(p.refusal->weight, 3u);
  EXPECT_EQ(p.refusal->explanation, p.message);
  EXPECT_NE(p.message.find("held outside hwwatchd"), std::string::npos) << p.message;
  // A CPU target names no thread.
  const Problem cpu = ProblemFromErrno(arch::ErrnoError("open", ENOSPC), KernelStep::kArm, 0, 1);
  EXPECT_FALSE(cpu.refusal->tid.has_value());
  // A modify says the old watch stays.
  const Problem m = ProblemFromErrno(arch::ErrnoError("open", ENOSPC), KernelStep::kModify, 42, 3);
  EXPECT_NE(m.message.find("the old watch stays"), std::string::npos) << m.message;
}

TEST(ProblemFromErrno, MessagesNameWhatFailed) {
  const arch::Error perm = arch::ErrnoError("PTRACE_SEIZE", EPERM);
  const Problem p = ProblemFromErrno(perm, KernelStep::kArm, 99, 1);
  EXPECT_NE(p.message.find("thread 99 is traced by another process"), std::string::npos);
  EXPECT_NE(p.message.find(perm.message), std::string::npos);
  const Problem gone = ProblemFromErrno(arch::ErrnoError("x", ESRCH), KernelStep::kModify, 5, 1);
  EXPECT_NE(gone.message.find("ended during the modify"), std::string::npos) << gone.message;
  const Problem other = ProblemFromErrno(arch::ErrnoError("ioctl", EIO), KernelStep::kModify, 5, 1);
  EXPECT_NE(other.message.find("the old one stays"), std::string::npos) << other.message;
}

}  // namespace
}  // namespace hwwatch::daemon
