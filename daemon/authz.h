// Who may watch what. A caller may watch a process only where the kernel
// itself would let that caller ptrace it (__ptrace_may_access with
// PTRACE_MODE_ATTACH_REALCREDS, then the capability and Yama LSM hooks):
// hwwatchd is root and must not be a way around that.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hwwatch::daemon {

// CAP_SYS_PTRACE and CAP_PERFMON as bit numbers of the capability sets.
constexpr int kCapSysPtrace = 19;
constexpr int kCapPerfmon = 38;

// A process's credentials as /proc shows them.
struct ProcCreds {
  pid_t pid = 0;
  pid_t tgid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;  // TracerPid: who ptraces it (0: nobody)
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  uint64_t cap_prm = 0;
  uint64_t cap_eff = 0;
  std::vector<gid_t> groups;  // supplementary groups
  // get_dumpable() == SUID_DUMP_USER. The kernel makes the files under
  // /proc/PID owned by root when a process is not dumpable; that is how it
  // is read here (so it is only visible for targets whose euid is not 0).
  bool dumpable = true;
  bool HasCap(int cap) const { return (cap_eff >> cap) & 1; }
};

// Parses the text of /proc/PID/status. dumpable is not in it (left true).
std::optional<ProcCreds> ParseProcStatus(const std::string& status);

// Reads /proc/PID/status and the owner of /proc/PID. nullopt: no such task.
std::optional<ProcCreds> ReadProcCreds(pid_t pid);

// /proc/sys/kernel/yama/ptrace_scope, or 0 when Yama is not built in.
int ReadYamaScope();

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

// True when `ancestor` is `pid` or one of its ancestors (real parents).
bool IsDescendant(pid_t pid, pid_t ancestor);

}  // namespace hwwatch::daemon
