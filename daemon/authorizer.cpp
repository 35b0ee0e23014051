#include "daemon/authorizer.h"

#include <algorithm>

#include "daemon/request_check.h"

namespace hwwatch::daemon {

namespace {

constexpr int kCapSysAdmin = 21;

// The caller's credentials: ids from SO_PEERCRED (what the kernel vouched
// for at connect time), capabilities from /proc when that process is still
// the one that connected (same ids), else none.
ProcCreds CallerCreds(const Peer& caller) {
  ProcCreds c;
  c.pid = c.tgid = caller.creds.pid;
  c.ruid = c.euid = c.suid = caller.creds.uid;
  c.rgid = c.egid = c.sgid = caller.creds.gid;
  if (auto p = ReadProcCreds(caller.creds.pid);
      p && p->euid == caller.creds.uid && p->egid == caller.creds.gid) {
    c.ruid = p->ruid;
    c.rgid = p->rgid;
    c.cap_prm = p->cap_prm;
    c.cap_eff = p->cap_eff;
    c.tgid = p->tgid;
    c.groups = p->groups;
  }
  return c;
}

Problem Denied(std::string message, std::optional<pid_t> tid) {
  Refusal r;
  r.reason = Refusal::Reason::kNotPermitted;
  r.tid = tid;
  return MakeProblem(Code::kPermissionDenied, std::move(message), std::move(r));
}

}  // namespace

ProcCreds Authorizer::SessionCreds(const Peer& caller) const {
  MutexLock lock(mu_);
  auto it = session_creds_.find(caller.session_id);
  if (it != session_creds_.end()) return it->second;
  ProcCreds c = CallerCreds(caller);
  session_creds_.emplace(caller.session_id, c);
  return c;
}

void Authorizer::Forget(uint64_t session) {
  MutexLock lock(mu_);
  session_creds_.erase(session);
}

bool Authorizer::InCpuGroup(const Peer& caller, const ProcCreds& me) const {
  if (cpu_group_ == static_cast<gid_t>(-1)) return false;
  return caller.creds.gid == cpu_group_ ||
         std::find(me.groups.begin(), me.groups.end(), cpu_group_) != me.groups.end();
}

std::optional<Problem> Authorizer::Check(const Peer& caller, const TargetSpec& target,
                                         const WatchSpec& watch) const {
  const ProcCreds me = SessionCreds(caller);
  const bool kernel_address = watch.region.address >= UserAddressLimit(arch_);
  if (!target.is_task() || kernel_address) {
    const bool allowed = caller.creds.uid == 0 || me.HasCap(kCapPerfmon) ||
                         me.HasCap(kCapSysAdmin) || InCpuGroup(caller, me);
    if (!allowed) {
      return Denied(
          "CPU targets and kernel addresses need root, CAP_PERFMON or the configured group",
          std::nullopt);
    }
    if (!target.is_task()) return std::nullopt;
  }
  const int scope = ReadYamaScope();
  // CAP_SYS_PTRACE may attach to anything below Yama scope 3, whatever the
  // target's credentials: no need to read them (a missing target is found
  // when arming).
  if (me.HasCap(kCapSysPtrace) && scope < 3) return std::nullopt;
  auto t = ReadProcCreds(target.tid);
  if (!t) return MakeProblem(Code::kNotFound, "no thread " + std::to_string(target.tid));
  YamaRelation rel;
  if (scope == 1) rel.target_is_descendant = IsDescendant(target.tid, caller.creds.pid);
  Decision d = MayPtrace(me, *t, scope, rel);
  if (d.allowed) return std::nullopt;
  return Denied("you may not watch thread " + std::to_string(target.tid) + ": " + d.reason,
                target.tid);
}

}  // namespace hwwatch::daemon
