// Reservations: validated, authorized, charged to a quota, admitted through
// the constraint engine, armed through a backend and owned by a session.
// The steps live in their own files: request_check (validation),
// authorizer, quota, the backends (backend.h), modify.cpp (Modify and its
// rollback), lifecycle.cpp (sessions, leases, reclaim, reaping). Speaks the
// daemon's vocabulary (types.h), never protobuf or gRPC; failures are
// Problems (error.h). Lock order: daemon/README.md.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/capabilities.h"
#include "arch/perf_event.h"
#include "daemon/authorizer.h"
#include "daemon/backend.h"
#include "daemon/bpf_capture.h"
#include "daemon/engine/constraints.h"
#include "daemon/error.h"
#include "daemon/event_hub.h"
#include "daemon/executor.h"
#include "daemon/fan_out.h"
#include "daemon/hit_sink.h"
#include "daemon/membership.h"
#include "daemon/peers.h"
#include "daemon/ptrace_slots.h"
#include "daemon/quota.h"
#include "daemon/request_check.h"
#include "daemon/sample_reader.h"
#include "daemon/thread_annotations.h"
#include "daemon/thread_lister.h"
#include "daemon/tracer.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

struct ReservationLimits {
  // Registers (summed weights) one non-root uid may hold at once.
  unsigned slots_per_uid = 16;
  // Group whose members may use CPU targets and kernel addresses (besides
  // root and CAP_PERFMON); -1: none.
  gid_t cpu_group = static_cast<gid_t>(-1);
};

// The backends a manager arms through (see backend.h). Tests may replace
// one with a test double before the manager uses it.
struct Backends {
  std::unique_ptr<Backend> events;          // counting
  std::unique_ptr<Backend> debugger_stops;  // a debugger's own stops, guarded
  std::unique_ptr<Backend> samples;         // perf samples
  std::unique_ptr<Backend> tracer_stops;    // stops hwwatchd takes
  std::unique_ptr<Backend> ptrace;          // registers written by the tracer
};

class ReservationManager final : private HitSink {
 public:
  // `journal_dir`: where the tracer records registers it writes through
  // ptrace ("" for none); leftovers of a previous daemon there are cleared.
  // `customize` may swap backends (test doubles, which account in the
  // engine given) before any is used.
  ReservationManager(arch::HostCapabilities caps, engine::LockMode lock, ReservationLimits limits,
                     CaptureOptions capture = {}, std::string journal_dir = "",
                     const std::function<void(Backends&, engine::Engine&)>& customize = {});
  ~ReservationManager() override;

  Result<ReservationInfo> Reserve(const Peer& caller, const ReserveArgs& req) EXCLUDES(mu_);
  // Replaces the watch of a reservation (same target): admitted as if the
  // old one were released; atomic to the caller (new watch, or old intact).
  Result<ReservationInfo> Modify(const Peer& caller, uint64_t id, const WatchRequest& watch)
      EXCLUDES(mu_);
  std::optional<Problem> Release(const Peer& caller, uint64_t id) EXCLUDES(mu_);
  std::vector<ReservationInfo> List(const Peer& caller, bool all) const EXCLUDES(mu_);
  // A stream of the caller's events (StreamEvents); the ids must be the
  // caller's own (root: any).
  // `capacity`: events the stream holds for a slow reader (0: default).
  Result<std::shared_ptr<EventStream>> Follow(const Peer& caller, std::vector<uint64_t> ids,
                                              bool lifecycle, EventStream::Notify notify,
                                              size_t capacity = 0) EXCLUDES(mu_);
  void Unfollow(const std::shared_ptr<EventStream>& s) { events_.Unsubscribe(s); }
  SlotsView Slots(const SlotsArgs& req);
  // The session's peer went away: release what it owns, except what has a
  // lease: that stays armed, orphaned, until reclaimed or the lease ends.
  void SessionEnded(uint64_t session_id) EXCLUDES(mu_);
  // Releases reservations whose target is gone (found by the backends)
  // and orphans whose lease ran out; called periodically (every 250 ms by
  // the daemon), never from the reader's thread.
  void Reap() EXCLUDES(mu_, gone_mu_);

  uint64_t active() const EXCLUDES(mu_);
  // Threads of watched processes left unwatched because they did not fit.
  uint64_t threads_refused() const { return threads_refused_.load(std::memory_order_relaxed); }
  uint64_t events_sent() const { return events_.sent(); }
  uint64_t events_lost() const { return events_.lost(); }
  engine::LockMode lock_mode() const { return engine_.config().lock; }
  // How samples are captured: BPF at the trap, or (with why) perf rings.
  bool bpf_capture() const { return capture_ != nullptr; }
  const std::string& capture_detail() const { return capture_detail_; }
  uint64_t capture_ring_bytes() const { return capture_ ? capture_->ring_bytes() : 0; }

 private:
  // Registers armed once and shared by every reservation of the same watch
  // on the same target (members: membership_).
  struct Group {
    uint64_t id = 0;  // the first member's id: samples and si_perf_data carry it
    std::string key;  // empty: never shared (stop delivery: the id matters)
    Backend* backend = nullptr;
    std::vector<ThreadArm> arms;
    // The tracer arms new threads of this process for the group (0: no).
    pid_t followed_tgid = 0;
    // Hits counted on arms closed since (threads that ended).
    uint64_t retired_hits = 0;
    // Capture records dropped on a full ring, told to the streams so far.
    uint64_t reported_lost = 0;
    // Some arm lives (arms of inherited events outlive their threads).
    bool alive() const {
      return std::any_of(arms.begin(), arms.end(), [](const ThreadArm& a) { return !a.exited; });
    }
  };
  struct Entry {
    ReservationInfo info;  // hits and sharers are filled in by List
    uid_t uid = 0;
    uint64_t session = 0;
    std::shared_ptr<Group> group;
    ArmSpec spec;     // how its registers were armed (spec.watch: &watch)
    WatchSpec watch;  // the checked watch
    std::chrono::nanoseconds lease{0};
    // While orphaned: until when it stays.
    std::optional<std::chrono::steady_clock::time_point> orphaned_until;
    unsigned weight() const { return watch.weight(); }
  };

  // HitSink: from the reader's thread and (through executor_) the tracer's.
  void Hit(const RawHit& hit) override EXCLUDES(delivered_mu_);
  void Lost(uint64_t group, uint64_t count) override EXCLUDES(delivered_mu_);
  void ThreadGone(uint64_t group, pid_t tid) override EXCLUDES(gone_mu_);
  void Execed(uint64_t group, pid_t tgid) override EXCLUDES(gone_mu_);
  void DebuggerGone(uint64_t group, pid_t tid) override EXCLUDES(gone_mu_);
  // A debugger's stop watch whose debugger let go of a thread (the guard
  // said so, or TracerPid names another now): why it must go, or "".
  std::string DebuggerLeft(const Entry& e, const std::vector<uint64_t>& guarded) const
      REQUIRES(mu_);

  Backend& BackendFor(const ArmHow& how);
  // Filters run in the capture program: samples with BPF only.
  std::optional<Problem> CheckFilters(const WatchSpec& watch, const ArmHow& how) const;
  // Perf stops: hwwatchd takes them itself unless the thread's own
  // debugger (its tracer) will.
  std::optional<Problem> DecideStops(const TargetSpec& target, ArmHow& how);
  // Admits and arms `e`'s watch on one thread or CPU (rolled back on
  // failure). spec.group 0: the admission's engine id becomes the group's.
  Result<ThreadArm> ArmOne(Backend& backend, const TargetSpec& where, ArmSpec& spec);
  // Admits and arms spec.group's watch on more threads of a process, all
  // in one Backend::ArmAll; threads that ended meanwhile are skipped. On
  // failure the new arms are rolled back, those in `armed` are kept.
  // `ran_on[i]` is where threads[i] last ran (-1: not known).
  std::optional<Problem> ArmThreads(Backend& backend, const std::vector<TargetSpec>& threads,
                                    const std::vector<int>& ran_on, const ArmSpec& spec,
                                    std::vector<ThreadArm>& armed);
  // The threads of process `pid` by tid, with where each last ran where the
  // thread lister can tell (else from /proc, CPUs not known). Empty: gone.
  std::vector<ThreadOnCpu> ThreadsOf(pid_t pid) const;
  // Why arming on `where` failed, with the count of slots held outside
  // hwwatchd where the kernel refused them.
  Problem ArmFailure(const TargetSpec& where, const ArmSpec& spec, Problem no);
  // Slots of `type` on task `tid` held outside hwwatchd, measured: what
  // the engine would still grant the task, less what the kernel grants it
  // (a dry run: events opened disabled, then closed). nullopt: not measured.
  std::optional<unsigned> HeldOutside(pid_t tid, arch::SlotType type);
  // The refusal for a watch of `weight` that the kernel, not the engine,
  // has no room for on `tid`.
  Problem HeldOutsideProblem(pid_t tid, arch::SlotType type, unsigned weight,
                             std::optional<unsigned> outside) const;
  // Joins the group of an equal watch, or arms a new one on every thread
  // of the target; sets e.info.id.
  std::optional<Problem> Place(const Peer& caller, Entry& e) EXCLUDES(mu_);
  std::optional<Problem> ArmNewGroup(const Peer& caller, Entry& e, uint64_t id);
  // Stores a placed entry and answers the caller.
  ReservationInfo Record(const Peer& caller, std::unique_ptr<Entry> entry) EXCLUDES(mu_);
  // The entry's registers in ReservationInfo terms (ptrace slots included).
  void DescribeRegisters(Entry& e) const;
  // The entry if `caller` may act on it (its own; root: any).
  Entry* Find(const Peer& caller, uint64_t id) const REQUIRES(mu_);
  static Problem NoSuchReservation(uint64_t id);

  // modify.cpp
  std::optional<Problem> MoveInEngine(Entry& e, arch::SlotType type, unsigned weight) REQUIRES(mu_);
  void RestoreInEngine(const Entry& e, size_t arms) REQUIRES(mu_);
  void CommitModify(Entry& e, const WatchRequest& request, WatchSpec watch, const ArmSpec& to)
      REQUIRES(mu_);

  // lifecycle.cpp
  Result<ReservationInfo> Reclaim(const Peer& caller, uint64_t id) EXCLUDES(mu_);
  // Keeps a leased entry armed without a session until reclaimed or the
  // lease ends.
  void Orphan(Entry& e, std::chrono::steady_clock::time_point now) REQUIRES(mu_);
  // Closes the entry's registers if it was their last sharer, gives back
  // its quota, and tells its streams why.
  void Disarm(Entry& e, const char* why) REQUIRES(mu_);
  void DisarmGroup(Group& g) REQUIRES(mu_);
  // Process targets: drop a thread that exited; arm threads the process
  // started since the last look and drop those gone.
  void DropThread(Group& g, pid_t tid) REQUIRES(mu_);
  void FollowThreads(Entry& e) REQUIRES(mu_);
  // Reservations with equal keys share their registers ("": never).
  static std::string ShareKey(const TargetSpec& target, const WatchRequest& watch,
                              const ArmHow& how, bool capture);

  const arch::HostCapabilities caps_;
  engine::Engine engine_;
  Membership membership_;
  EventHub events_;
  Quota quota_;
  Authorizer authorizer_;
  PtraceSlotBank ptrace_slots_;

  mutable Mutex mu_;  // the first lock of every call (see daemon/README.md)
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_ GUARDED_BY(mu_);
  std::unordered_map<std::string, std::shared_ptr<Group>> groups_ GUARDED_BY(mu_);  // by key
  // Sessions that ended in the last minute, and when.
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> ended_sessions_
      GUARDED_BY(mu_);
  uint64_t next_shared_id_ GUARDED_BY(mu_) = uint64_t{1} << 40;
  std::atomic<uint64_t> next_ptrace_id_{uint64_t{1} << 41};
  std::atomic<uint64_t> threads_refused_{0};

  // Hits published per group, and records the kernel reported lost (a
  // leaf lock: taken by the backends' threads).
  mutable Mutex delivered_mu_;
  std::unordered_map<uint64_t, uint64_t> delivered_ GUARDED_BY(delivered_mu_);
  std::unordered_map<uint64_t, uint64_t> ring_lost_ GUARDED_BY(delivered_mu_);
  // The hits of `g` as List reports them (counts, fates).
  void CountHits(const Group& g, ReservationInfo& r) const EXCLUDES(delivered_mu_);

  // Filled by the backends' threads, emptied by Reap().
  Mutex gone_mu_;
  std::vector<std::pair<uint64_t, pid_t>> gone_ GUARDED_BY(gone_mu_);    // (group, thread)
  std::vector<std::pair<uint64_t, pid_t>> execed_ GUARDED_BY(gone_mu_);  // (group, process)
  std::vector<uint64_t> debugger_gone_ GUARDED_BY(gone_mu_);             // groups (the guard)

  // Runs the tracer's hits (and nothing else) off the tracer thread.
  Executor executor_;
  // Its thread calls back into the members above until destroyed.
  SampleReader reader_;
  // It calls back into the members above (never mu_; hits through
  // executor_) until destroyed. Its thread's file table is a copy made
  // when it starts, so every fd it uses (executor_'s) must exist by then.
  Tracer tracer_;
  // The capture program (null: perf rings; capture_detail_ says why). Its
  // thread calls Hit() and ThreadGone() until destroyed, after backends_.
  std::unique_ptr<BpfCapture> capture_;
  std::string capture_detail_;
  // A process's threads from the kernel's list (null: /proc is read).
  std::unique_ptr<ThreadLister> lister_;
  // The perf backends arm and close a process's threads over these.
  FanOut fan_out_{FanOut::DefaultHelpers()};
  Backends backends_;
};

}  // namespace hwwatch::daemon
