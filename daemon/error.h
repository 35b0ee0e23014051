// The daemon's one error type: a Problem (a code in the daemon's own terms,
// one sentence for the caller, and for refusals the structured reason), and
// Result<T>, a value or a Problem. The service maps codes 1:1 to gRPC
// status codes at its edge (daemon/convert.cpp); nothing else sees gRPC.
//
// Result<T> is arch's value-or-error template with a Problem for the error.
// arch/'s own failures (arch::Error) and the engine's refusals
// (engine::Admission) become Problems through ProblemFromErrno() and
// RefusalFromEngine().
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "arch/arch.h"
#include "arch/result.h"

namespace hwwatch::daemon {

enum class Code {
  kInvalidArgument,     // the request can never succeed as written
  kNotFound,            // no such target or reservation
  kPermissionDenied,    // the caller may not do this
  kResourceExhausted,   // no slot, quota reached, held outside the daemon
  kFailedPrecondition,  // possible, but not in the target's current state
  kUnimplemented,
  kInternal,
};

// Why a watch did not fit, with the counts that decided it (v1.Refusal).
struct Refusal {
  enum class Reason {
    kUnspecified,
    kCpuFull,
    kTaskFull,
    kQuotaExceeded,
    kHeldOutside,
    kRegionTooLarge,
    kNotPermitted
  };
  Reason reason = Reason::kUnspecified;
  std::optional<arch::SlotType> slot_type;
  std::optional<uint32_t> cpu;
  std::optional<pid_t> tid;
  uint32_t slots = 0;
  uint32_t cpu_pinned = 0;
  uint32_t task_pinned = 0;
  uint32_t weight = 0;
  uint32_t quota = 0;
  uint32_t held = 0;
  std::optional<uint32_t> held_outside;  // kHeldOutside: measured in the kernel
  std::string explanation;
};

struct Problem {
  Code code = Code::kInternal;
  std::string message;  // one sentence for the caller
  std::optional<Refusal> refusal;
};

// The one factory: a refusal's explanation defaults to the message.
inline Problem MakeProblem(Code code, std::string message, std::optional<Refusal> refusal = {}) {
  if (refusal && refusal->explanation.empty()) refusal->explanation = message;
  return Problem{code, std::move(message), std::move(refusal)};
}
inline Problem Invalid(std::string m) { return MakeProblem(Code::kInvalidArgument, std::move(m)); }

// The one errno -> Code table, for what the kernel said when arming,
// modifying or tracing (see error.cpp).
Code CodeForErrno(int err);

// A kernel failure as the caller sees it, with the code from
// CodeForErrno(). ENOSPC after hwwatchd's own accounting had room means
// registers held outside hwwatchd, and the refusal says so. `tid` names
// the thread (0: a CPU target); `weight` the registers asked for.
enum class KernelStep { kArm, kModify };
Problem ProblemFromErrno(const arch::Error& err, KernelStep step, pid_t tid, unsigned weight);

// A value or a Problem.
template <class T>
using Result = arch::Result<T, Problem>;

}  // namespace hwwatch::daemon
