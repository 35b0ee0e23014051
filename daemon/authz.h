// Who may watch what (the decisions; what they read from /proc is in
// procfs.h). A caller may watch a process only where the kernel
// itself would let that caller ptrace it (__ptrace_may_access with
// PTRACE_MODE_ATTACH_REALCREDS, then the capability and Yama LSM hooks):
// hwwatchd is root and must not be a way around that.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/procfs.h"

namespace hwwatch::daemon {

// CAP_SYS_PTRACE and CAP_PERFMON as bit numbers of the capability sets.
constexpr int kCapSysPtrace = 19;
constexpr int kCapPerfmon = 38;

// The /proc readers moved to procfs.h; their names stay here too.
using procfs::IsDescendant;
using procfs::ParseProcStatus;
using procfs::ProcCreds;
using procfs::ReadProcCreds;
using procfs::ReadYamaScope;

// What Yama's relational mode (scope 1) needs to know besides credentials.
struct YamaRelation {
  bool target_is_descendant = false;  // the target descends from the caller
  // The target named the caller with PR_SET_PTRACER. The kernel keeps that
  // list to itself: the daemon always passes false (a conservative denial).
  bool declared_tracer = false;
};

// The decision itself (pure). Denials carry the kernel rule that denied.
struct Decision {
  bool allowed = false;
  std::string reason;
};
Decision MayPtrace(const ProcCreds& caller, const ProcCreds& target, int yama_scope,
                   const YamaRelation& relation);

}  // namespace hwwatch::daemon
