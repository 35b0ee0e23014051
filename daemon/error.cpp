#include "daemon/error.h"

#include <cerrno>

namespace hwwatch::daemon {

Code CodeForErrno(int err) {
  switch (err) {
    case ENOSPC:  // no slot left in the kernel
      return Code::kResourceExhausted;
    case ESRCH:  // the thread or process is gone
      return Code::kNotFound;
    case EPERM:   // another tracer has the thread
    case EBUSY:   // a chosen debug register is in use
    case EAGAIN:  // the thread did not stop in time
      return Code::kFailedPrecondition;
    case EINVAL:  // the kernel does not take this watch
      return Code::kInvalidArgument;
    default:
      return Code::kInternal;
  }
}

Problem ProblemFromErrno(const arch::Error& err, KernelStep step, pid_t tid, unsigned weight) {
  const Code code = CodeForErrno(err.code);
  const bool modify = step == KernelStep::kModify;
  if (err.Is(ENOSPC)) {
    Refusal r;
    r.reason = Refusal::Reason::kHeldOutside;
    r.weight = weight;
    if (tid > 0 && !modify) r.tid = tid;
    return MakeProblem(code,
                       modify ? "the kernel has no free slot for the new watch: registers are held "
                                "outside hwwatchd; the old watch stays"
                              : "the kernel has no free slot although hwwatchd's accounting had "
                                "room: the registers are held outside hwwatchd (a debugger, perf, "
                                "another tracer)",
                       std::move(r));
  }
  if (modify) {
    if (err.Is(ESRCH)) {
      return MakeProblem(code,
                         "a watched thread ended during the modify; the old watch stays on the "
                         "others: " +
                             err.message);
    }
    return MakeProblem(code,
                       "the kernel refused the new watch (" + err.message + "); the old one stays");
  }
  switch (err.code) {
    case ESRCH:
      return MakeProblem(code, "the target went away: " + err.message);
    case EPERM:
      return MakeProblem(code, "thread " + std::to_string(tid) +
                                   " is traced by another process, and hwwatchd must be its "
                                   "tracer for this (ptrace backend, or stops on an untraced "
                                   "thread): " +
                                   err.message);
    case EBUSY:
    case EAGAIN:
      return MakeProblem(code, err.message);
    case EINVAL:
      return MakeProblem(code, "the kernel refused: " + err.message);
    default:
      return MakeProblem(code, "arming failed: " + err.message);
  }
}

}  // namespace hwwatch::daemon
