// Reservations: validated, authorized, admitted through the constraint
// engine, armed through a backend, owned by a session. Knows protobuf
// messages (the API's vocabulary) but not gRPC; failures are Problems that
// the service maps to status codes.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/capabilities.h"
#include "arch/perf_event.h"
#include "daemon/authz.h"
#include "daemon/engine/constraints.h"
#include "daemon/event_hub.h"
#include "daemon/peers.h"
#include "daemon/problem.h"
#include "daemon/request_check.h"
#include "daemon/sample_reader.h"
#include "daemon/tracer.h"
#include "hwwatch/v1/hwwatch.pb.h"

namespace hwwatch::daemon {

struct ReservationLimits {
  // Registers (summed weights) one non-root uid may hold at once.
  unsigned slots_per_uid = 16;
  // Group whose members may use CPU targets and kernel addresses (besides
  // root and CAP_PERFMON); -1: none.
  gid_t cpu_group = static_cast<gid_t>(-1);
};

// A refusal with its structured reason, for the service to attach.
struct Refused {
  Problem problem;
  std::optional<v1::Refusal> refusal;
};

template <class T>
using Reply = std::variant<T, Refused>;

class ReservationManager {
 public:
  // `journal_dir`: where the tracer records registers it writes through
  // ptrace ("" for none); leftovers of a previous daemon there are cleared.
  ReservationManager(arch::HostCapabilities caps, engine::LockMode lock, ReservationLimits limits,
                     std::string journal_dir = "");
  ~ReservationManager();

  Reply<v1::Reservation> Reserve(const Peer& caller, const v1::ReserveRequest& req);
  // Replaces the watch of a reservation (same target): admitted as if the
  // old one were released; atomic to the caller (new watch, or old intact).
  Reply<v1::Reservation> Modify(const Peer& caller, const v1::ModifyRequest& req);
  Reply<bool> Release(const Peer& caller, uint64_t id);
  std::vector<v1::Reservation> List(const Peer& caller, bool all) const;
  // A stream of the caller's events (StreamEvents); the ids must be the
  // caller's own (root: any).
  Reply<std::shared_ptr<EventStream>> Follow(const Peer& caller, const v1::StreamEventsRequest& req,
                                             EventStream::Notify notify);
  void Unfollow(const std::shared_ptr<EventStream>& s) { events_.Unsubscribe(s); }
  v1::SlotsResponse Slots(const v1::SlotsRequest& req);
  // The session's peer went away: release what it owns, except what has a
  // lease: that stays armed, orphaned, until reclaimed or the lease ends.
  void SessionEnded(uint64_t session_id);
  // Releases reservations whose target is gone (found by the sample
  // reader) and orphans whose lease ran out; called periodically (every
  // 250 ms by the daemon), never from the reader's thread.
  void Reap();

  uint64_t active() const;
  uint64_t refusals() const;
  uint64_t events_sent() const { return events_.sent(); }
  uint64_t events_lost() const { return events_.lost(); }
  engine::LockMode lock_mode() const { return engine_.config().lock; }

 private:
  struct Entry;
  // How a reservation reaches the registers beyond perf's defaults.
  struct ArmHow {
    // The ptrace backend: the daemon traces the thread and writes its
    // registers, in `slot` (first register) or free ones.
    bool ptrace = false;
    std::optional<unsigned> slot;
    // Perf stop delivery on threads nobody else traces: the daemon traces
    // them and takes the SIGTRAPs.
    bool daemon_stops = false;
    bool traced() const { return ptrace || daemon_stops; }
  };
  // What is armed on one thread (or one CPU) for a reservation.
  struct Arm {
    pid_t tid = -1;  // -1: a CPU target
    engine::ReservationId engine_id = 0;
    // The tracer holds the thread for group `traced_group` (0: not traced);
    // ptrace backend: the debug register index of each register.
    uint64_t traced_group = 0;
    std::vector<unsigned> slots;
    arch::SlotType slot_type = arch::SlotType::kData;
    // Counting and stop deliveries; with samples, the region's registers
    // after the first (they write into its ring).
    std::vector<arch::PerfBreakpoint> events;
    // Sample delivery: the first register with the ring, shared with the
    // reader.
    std::vector<std::shared_ptr<SampledEvent>> sampled;
  };

  Refused Fail(Code code, std::string message, std::optional<v1::Refusal> refusal = {});
  // Needs mu_: `uid` holds `held` registers (besides the reservation a
  // Modify changes) and asks for `weight` more.
  Refused QuotaRefusal(uid_t uid, unsigned held, unsigned weight, bool modify = false);
  // Where an arm lives: its thread for a process target, else the target.
  static TargetSpec WhereArmed(const Entry& e, const Arm& arm);
  // Modify's steps (need mu_). Each backend moves every arm of `e` to
  // `watch` or none: on failure the old watch stays armed and accounted.
  std::optional<Refused> ModifyPtrace(Entry& e, const WatchSpec& watch, arch::SlotType type);
  // Admits the new watch in the engine on every arm (perf and daemon stops).
  std::optional<Refused> ModifyInEngine(Entry& e, arch::SlotType type, unsigned weight);
  // Puts the old watch back in the engine on the first `arms` arms.
  void RestoreInEngine(const Entry& e, size_t arms);
  std::optional<Refused> ModifyDaemonStops(Entry& e, const WatchSpec& watch);
  std::optional<Refused> ModifyPerf(Entry& e, const WatchSpec& watch);
  // The entry becomes the new watch (its quota, key, description, followers).
  v1::Reservation CommitModify(Entry& e, const v1::Watch& request, const WatchSpec& watch,
                               arch::SlotType type);
  // Admits `t` (a thread or CPU) in the engine and arms the watch there;
  // everything rolled back on failure. `reservation` 0: the arm's engine
  // id becomes the reservation's id.
  std::variant<Arm, Refused> ArmThread(const TargetSpec& t, const WatchSpec& watch,
                                       arch::SlotType type, arch::PerfOptions opts,
                                       uint64_t reservation, bool capture, const ArmHow& how);
  TraceUse UseFor(uint64_t group, const WatchSpec& watch, bool capture, const ArmHow& how) const;
  Refused ArmError(const arch::Error& err, const TargetSpec& t, unsigned weight) const;
  // The ptrace backend's slots of one thread, accounted per debug register
  // index: the kernel keeps a register written through ptrace registered
  // (disabled) after it is cleared, until the thread execs or ends, so the
  // engine keeps it too, and later ptrace watches reuse it first. Picks
  // `weight` free indices (`first` first, or exactly `exact`), admitting in
  // the engine those not registered yet.
  std::variant<std::vector<unsigned>, Refused> TakePtraceSlots(pid_t tid, arch::SlotType type,
                                                               unsigned weight,
                                                               std::optional<unsigned> first,
                                                               const std::vector<unsigned>* exact);
  // No longer in use (still registered in the kernel).
  void PutPtraceSlots(pid_t tid, arch::SlotType type, const std::vector<unsigned>& slots);
  // The thread ended or exec'd: the kernel freed its registers.
  void ForgetPtraceThread(pid_t tid);
  void DisarmOne(Arm& arm);
  // Process targets (need mu_): drop a thread that exited; arm threads the
  // process started since the last look and drop those gone.
  // Registers armed once and shared by every reservation of the same watch
  // on the same target (reference-counted by `members`).
  struct Group {
    uint64_t id = 0;  // the first member's id: samples and si_perf_data carry it
    std::string key;  // empty: never shared (stop delivery: the id matters)
    std::vector<Arm> arms;
    std::vector<uint64_t> members;
    // The tracer arms new threads of this process for the group (0: no).
    pid_t followed_tgid = 0;
  };
  void DropThread(Group& g, pid_t tid);
  void FollowThreads(const Entry& e, Group& g);
  // Needs mu_: sets Reservation.sharers on every member of `g`.
  void UpdateSharers(const Group& g);
  Reply<v1::Reservation> Reclaim(const Peer& caller, uint64_t id);
  std::optional<Refused> Authorize(const Peer& caller, const TargetSpec& target,
                                   const WatchSpec& watch) const;
  v1::Refusal FromEngine(const engine::Refusal& r) const;
  // The caller's credentials as its first call of the session found them:
  // ids from SO_PEERCRED, capabilities from /proc (a session keeps the
  // privileges it connected with, as SO_PEERCRED keeps its ids).
  ProcCreds SessionCreds(const Peer& caller) const;
  // A member (primary or supplementary) of the configured CPU group.
  bool InCpuGroup(const Peer& caller, const ProcCreds& me) const;
  // Keeps a leased entry armed without a session until reclaimed or the
  // lease ends. Needs mu_.
  void Orphan(Entry& e, std::chrono::steady_clock::time_point now);
  // Closes the entry's events and gives back its slots and quota; tells
  // its streams why. Needs mu_.
  void Disarm(Entry& e, const char* why);
  void OnHit(const SampledEvent& e, const arch::PerfSample& s);
  void OnTraceHit(const TraceHit& h);

  const arch::HostCapabilities caps_;
  const ReservationLimits limits_;
  engine::Engine engine_;
  EventHub events_;

  mutable std::mutex mu_;  // guards the maps below
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;
  std::unordered_map<uid_t, unsigned> held_by_uid_;
  // Sessions that ended in the last minute, and when (mu_).
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> ended_sessions_;
  uint64_t refusals_ = 0;

  std::unordered_map<std::string, std::shared_ptr<Group>> groups_;  // by key, mu_
  uint64_t next_shared_id_ = uint64_t{1} << 40;                     // mu_

  mutable std::mutex creds_mu_;  // guards session_creds_
  mutable std::unordered_map<uint64_t, ProcCreds> session_creds_;

  // Filled on the reader's and the tracer's threads, emptied by Reap().
  std::mutex gone_mu_;                              // guards gone_, execed_
  std::vector<std::pair<uint64_t, pid_t>> gone_;    // (group, thread)
  std::vector<std::pair<uint64_t, pid_t>> execed_;  // (group, process)

  struct PtraceBank {
    std::array<engine::ReservationId, 16> registered{};  // 0: never written
    std::array<bool, 16> in_use{};
  };
  std::mutex ptrace_mu_;  // guards ptrace_banks_
  std::map<std::pair<pid_t, arch::SlotType>, PtraceBank> ptrace_banks_;
  std::atomic<uint64_t> next_ptrace_id_{uint64_t{1} << 41};

  // Its thread calls back into the members above until destroyed.
  SampleReader reader_;
  // Last: it calls back into the members above (never mu_; hits through
  // reader_.Post) until destroyed. Its thread's file table is a copy made
  // when it starts, so every fd it uses (reader_'s) must exist by then.
  Tracer tracer_;
};

}  // namespace hwwatch::daemon
