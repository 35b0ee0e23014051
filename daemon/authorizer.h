// Who may watch what, for one daemon: CPU targets and kernel addresses need
// root, CAP_PERFMON (or CAP_SYS_ADMIN) or the configured group; a task
// target needs what the kernel itself asks of a ptrace attach (daemon/authz.h).
// A session keeps the privileges it connected with, as SO_PEERCRED keeps
// its ids: the caller's credentials are read once per session.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "arch/arch.h"
#include "daemon/authz.h"
#include "daemon/error.h"
#include "daemon/peers.h"
#include "daemon/thread_annotations.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

class Authorizer {
 public:
  // `cpu_group`: members may use CPU targets and kernel addresses (-1: none).
  Authorizer(arch::Arch arch, gid_t cpu_group) : arch_(arch), cpu_group_(cpu_group) {}

  // Nothing when `caller` may watch `watch` on `target`, else why not
  // (PERMISSION_DENIED with a NOT_PERMITTED refusal, or NOT_FOUND).
  std::optional<Problem> Check(const Peer& caller, const TargetSpec& target,
                               const WatchSpec& watch) const EXCLUDES(mu_);
  // The session ended: its credentials are forgotten.
  void Forget(uint64_t session) EXCLUDES(mu_);

 private:
  ProcCreds SessionCreds(const Peer& caller) const EXCLUDES(mu_);
  bool InCpuGroup(const Peer& caller, const ProcCreds& me) const;

  const arch::Arch arch_;
  const gid_t cpu_group_;
  mutable Mutex mu_;
  mutable std::unordered_map<uint64_t, ProcCreds> session_creds_ GUARDED_BY(mu_);
};

}  // namespace hwwatch::daemon
