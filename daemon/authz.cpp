#include "daemon/authz.h"

namespace hwwatch::daemon {

Decision MayPtrace(const ProcCreds& caller, const ProcCreds& target, int yama_scope,
                   const YamaRelation& relation) {
  const bool cap = caller.HasCap(kCapSysPtrace);
  // A thread may always look at its own thread group.
  if (caller.tgid != 0 && caller.tgid == target.tgid) return {true, "own process"};
  // __ptrace_may_access, REALCREDS: the caller's real ids must equal all of
  // the target's real, effective and saved ids, or the caller needs
  // CAP_SYS_PTRACE.
  const bool same_ids = caller.ruid == target.ruid && caller.ruid == target.euid &&
                        caller.ruid == target.suid && caller.rgid == target.rgid &&
                        caller.rgid == target.egid && caller.rgid == target.sgid;
  if (!same_ids && !cap) {
    return {false,
            "the target runs with other user or group ids (e.g. another user's or a "
            "setuid program) and the caller lacks CAP_SYS_PTRACE"};
  }
  if (!target.dumpable && !cap) {
    return {false,
            "the target is not dumpable (PR_SET_DUMPABLE 0, or it changed credentials)"
            " and the caller lacks CAP_SYS_PTRACE"};
  }
  // commoncap: the target may not hold permitted capabilities the caller
  // does not have, unless the caller has CAP_SYS_PTRACE.
  if ((target.cap_prm & ~caller.cap_prm) != 0 && !cap) {
    return {false, "the target holds capabilities the caller does not"};
  }
  switch (yama_scope) {
    case 0:
      break;
    case 1:
      if (!cap && !relation.target_is_descendant && !relation.declared_tracer) {
        return {false,
                "Yama ptrace_scope 1: the target is not a descendant of the caller (an"
                " exception the target made with PR_SET_PTRACER is not visible to hwwatchd"
                " and is not honoured; CAP_SYS_PTRACE is)"};
      }
      break;
    case 2:
      if (!cap) return {false, "Yama ptrace_scope 2: only CAP_SYS_PTRACE may attach"};
      break;
    default:
      return {false, "Yama ptrace_scope 3: no process may be attached to"};
  }
  return {true, cap ? "the caller has CAP_SYS_PTRACE" : "same user"};
}

}  // namespace hwwatch::daemon
