// The life of reservations after Reserve: sessions that end (release, or
// orphan what has a lease), reclaim of an orphan, leases that run out, and
// Reap(): threads and processes that ended or exec'd, new threads of
// watched processes, ptrace slots the kernel freed.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_set>

#include "daemon/events.h"
#include "daemon/procfs.h"
#include "daemon/reservations.h"

namespace hwwatch::daemon {

Result<ReservationInfo> ReservationManager::Reclaim(const Peer& caller, uint64_t id) {
  MutexLock lock(mu_);
  // Only the same uid takes a lease back (root: any); others see nothing.
  Entry* found = Find(caller, id);
  if (found == nullptr) return NoSuchReservation(id);
  Entry& e = *found;
  if (ended_sessions_.count(caller.session_id) != 0) {
    return MakeProblem(Code::kFailedPrecondition, "this session has ended");
  }
  if (!e.orphaned_until) {
    return MakeProblem(Code::kFailedPrecondition, "reservation " + std::to_string(id) +
                                                      " is held by a live session, not orphaned");
  }
  e.orphaned_until.reset();
  e.session = caller.session_id;
  e.info.orphaned = false;
  e.info.owner.pid = caller.creds.pid;
  e.info.owner.session_id = caller.session_id;
  membership_.SetSession(id, caller.session_id);
  ReservationInfo out = e.info;
  out.sharers = static_cast<unsigned>(membership_.Count(e.group->id));
  return out;
}

void ReservationManager::Orphan(Entry& e, std::chrono::steady_clock::time_point now) {
  e.session = 0;
  e.orphaned_until = now + e.lease;
  e.info.orphaned = true;
  membership_.SetSession(e.info.id, 0);
}

void ReservationManager::DisarmGroup(Group& g) {
  if (g.followed_tgid != 0) g.backend->Unfollow(g.followed_tgid, g.id);
  g.followed_tgid = 0;
  g.backend->DisarmAll(g.arms);
  g.arms.clear();
  // Its counts go with it (the Released event has its totals).
  MutexLock lock(delivered_mu_);
  delivered_.erase(g.id);
  ring_lost_.erase(g.id);
}

void ReservationManager::Disarm(Entry& e, const char* why) {
  const uint64_t id = e.info.id;
  if (events_.Wanted(id, true)) {  // the totals cost the kernel's counters a read each
    ReservationInfo totals;
    CountHits(*e.group, totals);
    events_.Publish(id, ReleasedEvent(id, why, totals), true);
  }
  if (membership_.Leave(id) == 0) {
    // The last sharer: the registers go.
    DisarmGroup(*e.group);
    if (auto it = groups_.find(e.group->key); it != groups_.end() && it->second == e.group) {
      groups_.erase(it);
    }
  }
  quota_.Refund(e.uid, e.weight());
}

void ReservationManager::SessionEnded(uint64_t session_id) {
  authorizer_.Forget(session_id);
  MutexLock lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  // Reserve and Reclaim calls of this session still in flight find it here.
  ended_sessions_.emplace(session_id, now);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = *it->second;
    if (e.session == session_id && e.lease.count() > 0) {
      // Kept (armed) for the lease: a reconnecting client may reclaim it.
      Orphan(e, now);
      ++it;
    } else if (e.session == session_id) {
      Disarm(e, "session closed");
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReservationManager::Reap() {
  std::vector<std::pair<uint64_t, pid_t>> gone;    // (group id, thread)
  std::vector<std::pair<uint64_t, pid_t>> execed;  // (group id, process)
  std::vector<uint64_t> guarded;                   // groups whose guard held back a stop
  {
    MutexLock lock(gone_mu_);
    gone.swap(gone_);
    execed.swap(execed_);
    guarded.swap(debugger_gone_);
  }
  // Threads whose end nothing reports (counting events, a debugger's
  // stops), and threads the tracer let go of, which hold registered slots
  // until they end: looked up in /proc without mu_ (thousands of threads
  // take a while, and no Reserve or Release waits for them).
  std::vector<std::pair<uint64_t, pid_t>> unreported;
  {
    MutexLock lock(mu_);
    for (auto& [id, e] : entries_) {
      if (e->info.target.kind == TargetSpec::Kind::kCpu ||
          e->info.target.kind == TargetSpec::Kind::kProcess) {
        continue;
      }
      for (const ThreadArm& arm : e->group->arms) {
        if (arm.sampled.empty() && arm.traced_group == 0) {
          unreported.emplace_back(e->group->id, arm.tid);
        }
      }
    }
  }
  for (pid_t tid : ptrace_slots_.Idle()) {
    if (!procfs::ThreadAlive(tid)) ptrace_slots_.Forget(tid);
  }
  for (const auto& [gid, tid] : unreported) {
    if (!procfs::ThreadAlive(tid)) gone.emplace_back(gid, tid);
  }
  MutexLock lock(mu_);
  for (auto [gid, tgid] : execed) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second->group->id != gid) {
        ++it;
        continue;
      }
      events_.Publish(it->first, ExecedEvent(it->first, tgid), true);
      Disarm(*it->second, "target exec'd");
      it = entries_.erase(it);
    }
    ptrace_slots_.Forget(tgid);  // exec flushed its registers
  }
  for (const auto& [gid, tid] : gone) ptrace_slots_.Forget(tid);
  for (auto [gid, tid] : gone) {
    for (auto& [id, e] : entries_) {
      if (e->group->id != gid) continue;
      if (e->info.target.kind == TargetSpec::Kind::kProcess) {
        DropThread(*e->group, tid);  // released below when none is left
      } else {
        // The thread is gone: every sharer is released below.
        for (ThreadArm& arm : e->group->arms) e->group->backend->Disarm(arm);
        e->group->arms.clear();
      }
      break;
    }
  }
  // Records the capture program could not fit in its ring: each group's
  // streams are told how many, as EventsLost.
  if (capture_) {
    std::unordered_set<const Group*> seen;
    for (auto& [id, e] : entries_) {
      Group& g = *e->group;
      if (!seen.insert(&g).second) continue;
      const uint64_t dropped = capture_->Read(g.id).dropped;
      if (dropped > g.reported_lost) {
        events_.PublishGroup(g.id, LostEvent(dropped - g.reported_lost), false);
        g.reported_lost = dropped;
      }
    }
  }
  const auto now = std::chrono::steady_clock::now();
  // A call outlives its session by far less than a minute.
  std::erase_if(ended_sessions_,
                [&](const auto& kv) { return now - kv.second > std::chrono::seconds(60); });
  std::vector<const Group*> followed;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = *it->second;
    Group& g = *e.group;
    if (e.info.target.kind == TargetSpec::Kind::kProcess &&
        std::find(followed.begin(), followed.end(), &g) == followed.end()) {
      FollowThreads(e);
      followed.push_back(&g);
    }
    std::string left;
    if (!g.alive()) {
      Disarm(e, "target exited");
      it = entries_.erase(it);
    } else if (!(left = DebuggerLeft(e, guarded)).empty()) {
      spdlog::warn("reservation {}: {}", it->first, left);
      Disarm(e, left.c_str());
      it = entries_.erase(it);
    } else if (e.orphaned_until && *e.orphaned_until <= now) {
      Disarm(e, "lease expired");
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReservationManager::DropThread(Group& g, pid_t tid) {
  for (auto a = g.arms.begin(); a != g.arms.end(); ++a) {
    if (a->tid != tid || a->exited) continue;
    if (a->inherits) {
      // Its event holds the copies in the threads it started: it stays
      // open (and accounted, as the kernel accounts it) until the group goes.
      a->exited = true;
    } else {
      g.retired_hits += g.backend->Hits(*a);
      g.backend->Disarm(*a);
      g.arms.erase(a);
    }
    events_.PublishGroup(g.id, ExitedEvent(g.id, tid), true);
    return;
  }
}

void ReservationManager::FollowThreads(Entry& e) {
  Group& g = *e.group;
  const pid_t pid = e.info.target.tid;
  std::vector<pid_t> now;
  for (const ThreadOnCpu& t : ThreadsOf(pid)) now.push_back(t.tid);
  std::vector<pid_t> gone;
  for (const ThreadArm& a : g.arms) {
    if (!a.exited && !std::binary_search(now.begin(), now.end(), a.tid)) gone.push_back(a.tid);
  }
  for (pid_t tid : gone) DropThread(g, tid);
  if (now.empty()) return;  // the process is gone
  ArmSpec spec = e.spec;
  spec.group = g.id;
  // The kernel armed the process's new threads at clone from inherited
  // events: they are only accounted here, as the kernel accounts them.
  const bool inherited = !g.arms.empty() && g.arms.front().inherits;
  std::unordered_set<pid_t> known;
  for (const ThreadArm& a : g.arms) {
    if (!a.exited) known.insert(a.tid);
  }
  for (pid_t tid : now) {
    if (known.count(tid) != 0) continue;
    if (inherited) {
      const TargetSpec where{TargetSpec::Kind::kThread, tid, 0};
      auto arm = g.backend->Admit(where, spec.type, spec.watch->weight(), spec.how);
      if (!arm) {
        // The kernel fitted it (its clone succeeded): the engine disagrees.
        spdlog::error(
            "reservation {}: thread {} the kernel armed at clone does not fit the "
            "engine: {}",
            g.id, tid, arm.error().message);
        continue;
      }
      arm->kernel_armed = true;
      g.arms.push_back(std::move(arm.value()));
      events_.PublishGroup(g.id, ThreadAddedEvent(g.id, pid, tid), true);
      continue;
    }
    auto arm = ArmOne(*g.backend, {TargetSpec::Kind::kThread, tid, 0}, spec);
    if (!arm) {
      // The tracer may have armed it when it started: not accounted, so not kept.
      ThreadArm stray;
      stray.tid = tid;
      stray.traced_group = g.id;
      g.backend->Disarm(stray);
      // The thread runs unwatched; say so rather than hide it.
      spdlog::warn("reservation {}: new thread {} of process {} not watched: {}", g.id, tid, pid,
                   arm.error().message);
      threads_refused_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    g.arms.push_back(std::move(arm.value()));
    events_.PublishGroup(g.id, ThreadAddedEvent(g.id, pid, tid), true);
  }
}

}  // namespace hwwatch::daemon
