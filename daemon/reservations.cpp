#include "daemon/reservations.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "daemon/accounting.h"
#include "daemon/bpf_samples_backend.h"
#include "daemon/debugger_stops_backend.h"
#include "daemon/events.h"
#include "daemon/perf_events_backend.h"
#include "daemon/perf_samples_backend.h"
#include "daemon/procfs.h"
#include "daemon/ptrace_backend.h"
#include "daemon/tracer_stops_backend.h"

namespace hwwatch::daemon {

ReservationManager::ReservationManager(
    arch::HostCapabilities caps, engine::LockMode lock, ReservationLimits limits,
    CaptureOptions capture, std::string journal_dir,
    const std::function<void(Backends&, engine::Engine&)>& customize)
    : caps_(std::move(caps)),
      engine_(engine::Config{std::max(1u, caps_.cpus), caps_.pools, lock, 0}),
      events_(membership_),
      quota_(limits.slots_per_uid),
      authorizer_(caps_.arch, limits.cpu_group),
      ptrace_slots_(caps_, engine_),
      reader_(*this),
      tracer_(std::move(journal_dir),
              Tracer::Sink{// The tracer runs no gRPC code (its file table is its own):
                           // its hits are published on the executor's thread.
                           [this](const TraceHit& h) { executor_.Post([this, h] { Hit(h); }); },
                           [this](uint64_t group, pid_t tid, int) { ThreadGone(group, tid); },
                           [this](uint64_t group, pid_t tgid) { Execed(group, tgid); }},
              std::vector<int>{executor_.post_fd()}) {
  std::string no_lister;
  lister_ = ThreadLister::Load(no_lister);
  if (!lister_) spdlog::info("threads of a process are listed from /proc: {}", no_lister);
  backends_.events = std::make_unique<PerfEventsBackend>(caps_, engine_, fan_out_);
  if (capture.bpf) {
    capture_ = BpfCapture::Load(*this, capture, capture_detail_);
  } else {
    capture_detail_ = "BPF capture is turned off (--capture ring)";
  }
  if (capture_) {
    capture_detail_ = "a BPF program on each breakpoint event reads the value at the trap";
    backends_.samples = std::make_unique<BpfSamplesBackend>(caps_, engine_, fan_out_, *capture_);
  } else {
    spdlog::warn("hits are captured through perf rings, values read at delivery: {}",
                 capture_detail_);
    backends_.samples = std::make_unique<PerfSamplesBackend>(caps_, engine_, fan_out_, reader_);
  }
  backends_.debugger_stops =
      std::make_unique<DebuggerStopsBackend>(caps_, engine_, fan_out_, capture_.get());
  if (!capture_) {
    spdlog::warn(
        "a debugger's stop watches are checked for a debugger that let go only every sweep (no "
        "BPF guard): a stop in between kills the untraced thread");
  } else if (!BpfCapture::GuardSuppresses()) {
    spdlog::warn(
        "this kernel (before Linux 6.10) sends a debugger's stop even when the guard says no: a "
        "thread its debugger let go dies of its next hit until the watch is disarmed");
  }
  backends_.tracer_stops = std::make_unique<TracerStopsBackend>(caps_, engine_, tracer_);
  backends_.ptrace = std::make_unique<PtraceBackend>(caps_, ptrace_slots_, tracer_);
  if (customize) customize(backends_, engine_);
  if (unsigned n = tracer_.leftovers_cleared()) {
    spdlog::warn("cleared debug registers a previous hwwatchd left armed on {} thread(s)", n);
  }
}

ReservationManager::~ReservationManager() {
  // Perf events first, then what the tracer holds: no SIGTRAP may reach a
  // thread after the daemon stops tracing it.
  MutexLock lock(mu_);
  for (auto& [id, e] : entries_) DisarmGroup(*e->group);
}

Backend& ReservationManager::BackendFor(const ArmHow& how) {
  if (how.ptrace) return *backends_.ptrace;
  if (how.daemon_stops) return *backends_.tracer_stops;
  if (how.delivery == Delivery::kStop) return *backends_.debugger_stops;
  if (how.delivery == Delivery::kSamples) return *backends_.samples;
  return *backends_.events;
}

std::optional<Problem> ReservationManager::CheckFilters(const WatchSpec& watch,
                                                        const ArmHow& how) const {
  if (!watch.filtered()) return std::nullopt;
  if (how.ptrace || how.delivery != Delivery::kSamples) {
    return MakeProblem(Code::kInvalidArgument,
                       "changed and condition are evaluated by the BPF capture program at the "
                       "trap: they need perf samples delivery");
  }
  if (!capture_) {
    return MakeProblem(Code::kFailedPrecondition,
                       "changed and condition need BPF capture, which this daemon does not use: " +
                           capture_detail_);
  }
  return std::nullopt;
}

std::optional<Problem> ReservationManager::DecideStops(const TargetSpec& target, ArmHow& how) {
  if (how.delivery != Delivery::kStop || how.ptrace) return std::nullopt;
  // A SIGTRAP nobody waits for kills the target: the caller's debugger
  // takes it, or else hwwatchd traces the thread and takes it itself.
  if (!target.is_task()) return Invalid("stop delivery needs a thread target, not a CPU");
  auto t = ReadProcCreds(target.tid);
  if (!t) return MakeProblem(Code::kNotFound, "no thread " + std::to_string(target.tid));
  how.daemon_stops = t->tracer_pid == 0 || tracer_.Traces(target.tid);
  return std::nullopt;
}

Result<ReservationInfo> ReservationManager::Reserve(const Peer& caller, const ReserveArgs& req) {
  if (req.reclaim) return Reclaim(caller, *req.reclaim);
  // Validate.
  auto checked = CheckReserve(req, caps_.cpus);
  if (!checked) return std::move(checked).error();
  const TargetSpec target = checked->target;
  ArmHow how = checked->how;
  auto watch = CheckWatch(req.watch, target, caps_);
  if (!watch) {
    const bool exec = req.watch.access == arch::Access::kExecute;
    return WatchProblem(std::move(watch).error(),
                        arch::SlotTypeOf(exec ? arch::Access::kExecute : arch::Access::kWrite));
  }
  if (auto no = CheckFilters(*watch, how)) return std::move(*no);
  // Authorize.
  if (auto denied = authorizer_.Check(caller, target, *watch)) return std::move(*denied);
  if (auto no = DecideStops(target, how)) return std::move(*no);
  // Charge the quota first, so concurrent requests of one uid cannot
  // overshoot it.
  if (auto no = quota_.Charge(caller.creds.uid, watch->weight())) return std::move(*no);

  auto e = std::make_unique<Entry>();
  e->uid = caller.creds.uid;
  e->session = caller.session_id;
  e->watch = std::move(watch.value());
  e->spec.watch = &e->watch;
  e->spec.type = arch::SlotTypeOf(e->watch.region.access);
  e->spec.how = how;
  e->spec.capture = req.capture_value && target.is_task();
  e->spec.options.exclude_kernel = target.is_task();
  e->spec.options.sampling = how.delivery == Delivery::kSamples;
  e->spec.options.sigtrap = how.delivery == Delivery::kStop && !how.ptrace;
  e->lease = std::chrono::seconds(req.lease.seconds) + std::chrono::nanoseconds(req.lease.nanos);
  ReservationInfo& info = e->info;
  info.target = target;
  info.watch = req.watch;
  info.backend = how.ptrace ? BackendChoice::kPtrace : BackendChoice::kPerf;
  info.delivery = how.delivery;
  info.slot_type = e->spec.type;
  info.weight = e->weight();
  info.owner = Owner{caller.creds.uid, caller.creds.gid, caller.creds.pid, caller.session_id};
  clock_gettime(CLOCK_REALTIME, &info.created);
  info.lease = req.lease;
  info.label = req.label;
  // Admit in the engine and arm through the backend (or share registers).
  if (auto no = Place(caller, *e)) {
    quota_.Refund(caller.creds.uid, e->weight());
    return std::move(*no);
  }
  // Record.
  return Record(caller, std::move(e));
}

std::optional<Problem> ReservationManager::Place(const Peer& caller, Entry& e) {
  const TargetSpec& target = e.info.target;
  const std::string key = ShareKey(target, e.info.watch, e.spec.how, e.spec.capture);
  if (!key.empty()) {
    // The same watch on the same target shares the registers.
    MutexLock lock(mu_);
    if (auto it = groups_.find(key); it != groups_.end()) {
      e.group = it->second;
      e.info.id = next_shared_id_++;
      membership_.Join(e.group->id, e.info.id, caller.session_id);
      e.spec.options.sig_data = e.group->id;
      e.spec.group = e.group->id;
      return std::nullopt;
    }
  }
  e.group = std::make_shared<Group>();
  e.group->key = key;
  e.group->backend = &BackendFor(e.spec.how);
  // Ptrace slots are per index: no engine admission of its own names it.
  const uint64_t id = e.spec.how.ptrace ? next_ptrace_id_++ : 0;
  return ArmNewGroup(caller, e, id);
}

std::optional<Problem> ReservationManager::ArmNewGroup(const Peer& caller, Entry& e, uint64_t id) {
  const TargetSpec& target = e.info.target;
  Group& g = *e.group;
  if (id != 0) membership_.Join(id, id, caller.session_id);
  // A process: every thread it has now (later ones are found by Reap()).
  std::vector<TargetSpec> threads;
  std::vector<int> ran_on;
  if (target.kind == TargetSpec::Kind::kProcess) {
    for (const ThreadOnCpu& t : ThreadsOf(target.tid)) {
      threads.push_back({TargetSpec::Kind::kThread, t.tid, 0});
      ran_on.push_back(t.cpu);
    }
    if (threads.empty())
      return MakeProblem(Code::kNotFound, "no process " + std::to_string(target.tid));
  } else {
    threads.push_back(target);
  }
  e.spec.group = id;
  if (target.kind == TargetSpec::Kind::kProcess && g.backend->Inherits()) {
    e.spec.inherit = true;
    e.spec.tgid = target.tid;
  }
  // The first thread alone (its engine id names the group where none was
  // given), the others of a process together.
  size_t next = 0;
  std::optional<Problem> failed;
  for (; next < threads.size() && g.arms.empty() && !failed; ++next) {
    auto arm = ArmOne(*g.backend, threads[next], e.spec);
    if (!arm) {
      if (target.kind != TargetSpec::Kind::kProcess || arm.error().code != Code::kNotFound) {
        failed = std::move(arm).error();
      }
      continue;  // else a thread that ended meanwhile
    }
    g.arms.push_back(std::move(arm.value()));
    if (e.spec.group == 0) {
      e.spec.group = g.arms.front().engine_id;
      membership_.Join(e.spec.group, e.spec.group, caller.session_id);
    }
  }
  if (!failed && next < threads.size()) {
    failed = ArmThreads(
        *g.backend, {threads.begin() + static_cast<std::ptrdiff_t>(next), threads.end()},
        {ran_on.begin() + static_cast<std::ptrdiff_t>(next), ran_on.end()}, e.spec, g.arms);
  }
  if (failed) {
    g.backend->DisarmAll(g.arms);
    g.arms.clear();
    if (e.spec.group != 0) membership_.Leave(e.spec.group);
    return failed;
  }
  if (g.arms.empty()) {
    if (e.spec.group != 0) membership_.Leave(e.spec.group);
    return MakeProblem(Code::kNotFound, "process " + std::to_string(target.tid) + " ended");
  }
  if (e.spec.how.traced() && target.kind == TargetSpec::Kind::kProcess) {
    // Threads it starts from now on are armed (ptrace) or held (stops)
    // before they run; Reap() accounts them.
    g.backend->Follow(target.tid, g.arms.front(), e.spec);
    g.followed_tgid = target.tid;
  }
  g.id = e.info.id = e.spec.group;
  e.spec.options.sig_data = g.id;
  return std::nullopt;
}

Result<ThreadArm> ReservationManager::ArmOne(Backend& backend, const TargetSpec& where,
                                             ArmSpec& spec) {
  auto arm = backend.Admit(where, spec.type, spec.watch->weight(), spec.how);
  if (!arm) return arm;
  ArmSpec these = spec;
  if (these.group == 0) these.group = arm->engine_id;
  these.options.sig_data = these.group;
  if (auto no = backend.Arm(*arm, where, these)) {
    backend.Disarm(*arm);  // closes what was armed, gives the slots back
    return ArmFailure(where, spec, std::move(*no));
  }
  return arm;
}

std::optional<Problem> ReservationManager::ArmThreads(Backend& backend,
                                                      const std::vector<TargetSpec>& threads,
                                                      const std::vector<int>& ran_on,
                                                      const ArmSpec& spec,
                                                      std::vector<ThreadArm>& armed) {
  std::vector<ThreadArm> arms;
  std::optional<Problem> failed;
  for (size_t i = 0; i < threads.size(); ++i) {
    auto arm = backend.Admit(threads[i], spec.type, spec.watch->weight(), spec.how);
    if (arm) {
      arm->last_cpu = i < ran_on.size() ? ran_on[i] : -1;
      arms.push_back(std::move(arm.value()));
    } else if (arm.error().code != Code::kNotFound) {
      failed = std::move(arm).error();
      break;
    }
  }
  if (failed) {
    backend.DisarmAll(arms);
    return failed;
  }
  ArmSpec these = spec;
  these.options.sig_data = these.group;
  std::vector<std::optional<Problem>> results = backend.ArmAll(arms, these);
  for (size_t i = 0; i < arms.size(); ++i) {
    if (!results[i]) {
      armed.push_back(std::move(arms[i]));
      continue;
    }
    backend.Disarm(arms[i]);
    if (results[i]->code == Code::kNotFound || failed) continue;  // ended meanwhile
    failed = ArmFailure({TargetSpec::Kind::kThread, arms[i].tid, 0}, spec, std::move(*results[i]));
  }
  return failed;
}

std::vector<ThreadOnCpu> ReservationManager::ThreadsOf(pid_t pid) const {
  if (lister_) {
    if (auto listed = lister_->List(pid)) return std::move(*listed);
  }
  std::vector<ThreadOnCpu> out;
  for (pid_t tid : procfs::ListThreads(pid)) out.push_back({tid, -1});
  return out;
}

Problem ReservationManager::ArmFailure(const TargetSpec& where, const ArmSpec& spec, Problem no) {
  if (no.refusal && no.refusal->reason == Refusal::Reason::kHeldOutside && where.is_task()) {
    // Say how many, as `slots --explain` does.
    return HeldOutsideProblem(where.tid, spec.type, spec.watch->weight(),
                              HeldOutside(where.tid, spec.type));
  }
  return no;
}

std::optional<unsigned> ReservationManager::HeldOutside(pid_t tid, arch::SlotType type) {
  const arch::SlotPool* pool = caps_.PoolFor(type);
  if (pool == nullptr || tid <= 0) return std::nullopt;
  unsigned engine_free = 0;
  for (unsigned w = pool->slots; w > 0 && engine_free == 0; --w) {
    if (!engine_.Probe({engine::Target::Task(tid), type, w})) engine_free = w;
  }
  auto kernel = arch::KernelFreeSlots(arch::PerfTarget::Thread(tid), type, engine_free);
  if (!kernel) return std::nullopt;
  return engine_free - std::min(engine_free, *kernel);
}

Problem ReservationManager::HeldOutsideProblem(pid_t tid, arch::SlotType type, unsigned weight,
                                               std::optional<unsigned> outside) const {
  Refusal r;
  r.reason = Refusal::Reason::kHeldOutside;
  r.slot_type = type;
  r.tid = tid;
  r.weight = weight;
  const arch::SlotPool* pool = caps_.PoolFor(type);
  r.slots = pool != nullptr ? pool->slots : 0;
  r.held_outside = outside;
  const std::string what = outside ? std::to_string(*outside) + " slot(s)" : "slots";
  return MakeProblem(Code::kResourceExhausted,
                     "does not fit: " + what + " held outside hwwatchd on thread " +
                         std::to_string(tid) + " (a debugger, perf or another tracer); " +
                         std::to_string(weight) + " needed",
                     std::move(r));
}

void ReservationManager::DescribeRegisters(Entry& e) const {
  e.info.registers.clear();
  for (const auto& reg : e.watch.cover.registers) {
    e.info.registers.push_back({reg.address, static_cast<uint32_t>(reg.length), std::nullopt});
  }
  const Group& g = *e.group;
  if (e.spec.how.ptrace && e.info.target.kind == TargetSpec::Kind::kThread && !g.arms.empty()) {
    // The debug register index of each register.
    const auto& slots = g.arms.front().slots;
    for (size_t i = 0; i < e.info.registers.size() && i < slots.size(); ++i) {
      e.info.registers[i].slot = slots[i];
    }
  }
}

ReservationInfo ReservationManager::Record(const Peer& caller, std::unique_ptr<Entry> entry) {
  MutexLock lock(mu_);
  Entry& e = *entry;
  DescribeRegisters(e);
  const uint64_t id = e.info.id;
  if (!e.group->key.empty()) groups_.emplace(e.group->key, e.group);  // first one wins
  entries_.emplace(id, std::move(entry));
  ReservationInfo out = e.info;
  out.sharers = static_cast<unsigned>(membership_.Count(e.group->id));
  if (ended_sessions_.count(caller.session_id) != 0) {
    // The caller hung up while this was being armed: SessionEnded() has
    // run already and could not see it.
    if (e.lease.count() > 0) {
      Orphan(e, std::chrono::steady_clock::now());
    } else {
      Disarm(e, "session closed");
      entries_.erase(id);
    }
  }
  return out;
}

void ReservationManager::Hit(const RawHit& hit) {
  {
    MutexLock lock(delivered_mu_);
    ++delivered_[hit.group];
  }
  events_.PublishGroup(hit.group, HitEvent(hit), false);
}

void ReservationManager::Lost(uint64_t group, uint64_t count) {
  {
    MutexLock lock(delivered_mu_);
    ring_lost_[group] += count;
  }
  events_.PublishGroup(group, LostEvent(count), false);
}

void ReservationManager::CountHits(const Group& g, ReservationInfo& r) const {
  uint64_t counted = g.retired_hits;
  for (const ThreadArm& arm : g.arms) counted += g.backend->Hits(arm);
  uint64_t published = 0, lost = 0;
  {
    MutexLock lock(delivered_mu_);
    if (auto it = delivered_.find(g.id); it != delivered_.end()) published = it->second;
    if (auto it = ring_lost_.find(g.id); it != ring_lost_.end()) lost = it->second;
  }
  if (auto f = g.backend->FatesOf(g.id)) {
    // The program's own counts, each a fact (not a remainder): once the
    // target's accesses are done they add up to the kernel's count, unless
    // traps never reached the program.
    r.hits = counted;
    r.delivered = f->delivered;
    r.filtered = f->filtered;
    r.lost = f->lost;
  } else if (!g.backend->KernelCounts()) {
    // Registers the tracer writes or stops it takes: the daemon holds no
    // counter of the kernel's; every hit is a stop it took and published.
    r.hits = r.delivered = published;
  } else if (g.arms.empty() || g.arms.front().sampled.empty()) {
    r.hits = counted;  // counting, or a debugger's own stops: no events here
  } else {
    // perf rings: what the reader published, and what the kernel said it
    // dropped; the rest was still in a ring.
    r.hits = counted;
    r.delivered = std::min(counted, published);
    r.lost = std::min(counted - r.delivered, lost);
  }
}

void ReservationManager::ThreadGone(uint64_t group, pid_t tid) {
  MutexLock lock(gone_mu_);
  gone_.emplace_back(group, tid);
}

void ReservationManager::Execed(uint64_t group, pid_t tgid) {
  MutexLock lock(gone_mu_);
  execed_.emplace_back(group, tgid);
}

void ReservationManager::DebuggerGone(uint64_t group, pid_t) {
  MutexLock lock(gone_mu_);
  debugger_gone_.push_back(group);
}

std::string ReservationManager::DebuggerLeft(const Entry& e,
                                             const std::vector<uint64_t>& guarded) const {
  if (e.group->backend != backends_.debugger_stops.get()) return "";
  const bool told = std::find(guarded.begin(), guarded.end(), e.group->id) != guarded.end();
  for (const ThreadArm& arm : e.group->arms) {
    if (arm.tracer_tgid == 0) continue;
    pid_t now = 0;
    if (auto creds = ReadProcCreds(arm.tid); creds && creds->tracer_pid != 0) {
      auto tracer = ReadProcCreds(creds->tracer_pid);
      now = tracer ? tracer->tgid : creds->tracer_pid;
    }
    if (told || now != arm.tracer_tgid) {
      return "its debugger (pid " + std::to_string(arm.tracer_tgid) + ") let go of thread " +
             std::to_string(arm.tid) + ", where a stop would kill it: the watch was disarmed" +
             (told ? " (its guard held back a stop)" : "");
    }
  }
  return "";
}

Problem ReservationManager::NoSuchReservation(uint64_t id) {
  return MakeProblem(Code::kNotFound, "you hold no reservation " + std::to_string(id));
}

ReservationManager::Entry* ReservationManager::Find(const Peer& caller, uint64_t id) const {
  auto it = entries_.find(id);
  // Another user's reservation is as good as absent to this caller.
  if (it == entries_.end() || (caller.creds.uid != 0 && it->second->uid != caller.creds.uid)) {
    return nullptr;
  }
  return it->second.get();
}

std::optional<Problem> ReservationManager::Release(const Peer& caller, uint64_t id) {
  MutexLock lock(mu_);
  Entry* e = Find(caller, id);
  if (e == nullptr) return NoSuchReservation(id);
  Disarm(*e, "released");
  entries_.erase(id);
  return std::nullopt;
}

std::vector<ReservationInfo> ReservationManager::List(const Peer& caller, bool all) const {
  std::vector<ReservationInfo> out;
  MutexLock lock(mu_);
  for (const auto& [id, e] : entries_) {
    if (e->uid != caller.creds.uid && !(all && caller.creds.uid == 0)) continue;
    ReservationInfo r = e->info;
    CountHits(*e->group, r);
    r.sharers = static_cast<unsigned>(membership_.Count(e->group->id));
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

SlotsView ReservationManager::Slots(const SlotsArgs& req) {
  SlotsView out;
  engine::Snapshot s = engine_.TakeSnapshot();
  for (const auto& c : s.cpus) {
    // A mixed pool is reported once, as data (the types it serves are in
    // GetCapabilities); separate pools each under their own type.
    out.cpus.push_back({c.cpu, c.types.size() > 1 ? arch::SlotType::kData : c.types.at(0), c.slots,
                        c.cpu_pinned, c.max_task_pinned, c.free, c.tasks_by_slots});
  }
  for (const auto& t : s.tasks) {
    const auto& types = engine_.config().pools[t.pool].types;
    SlotsView::Task v{
        t.tid, types.size() > 1 ? arch::SlotType::kData : types.at(0), t.all_cpus, {}, {}};
    for (const auto& [cpu, n] : t.per_cpu) v.per_cpu[cpu] = n;
    v.held_outside = HeldOutside(t.tid, types.at(0));
    out.tasks.push_back(std::move(v));
  }
  if (!req.probe) return out;
  SlotsView::Probe& probe = out.probe.emplace();
  auto target = CheckTarget(req.target, caps_.cpus);
  auto watch = target ? CheckWatch(req.watch, *target, caps_) : Result<WatchSpec>(target.error());
  if (!target || !watch) {
    const Problem& p = target ? watch.error() : target.error();
    Refusal r;
    r.reason = p.code == Code::kResourceExhausted ? Refusal::Reason::kRegionTooLarge
                                                  : Refusal::Reason::kUnspecified;
    r.explanation = p.message;
    probe.refusal = std::move(r);
    return out;
  }
  probe.weight = watch->weight();
  for (const auto& reg : watch->cover.registers) {
    probe.registers.push_back({reg.address, static_cast<uint32_t>(reg.length), std::nullopt});
  }
  auto no =
      engine_.Probe({ToEngine(*target), arch::SlotTypeOf(watch->region.access), watch->weight()});
  probe.fits = !no.has_value();
  if (no) probe.refusal = RefusalFromEngine(*no);
  if (target->is_task()) {
    // What the kernel says, too: registers taken outside hwwatchd (perf,
    // a debugger's own watch) are not in the engine.
    const arch::SlotType type = arch::SlotTypeOf(watch->region.access);
    probe.held_outside = HeldOutside(target->tid, type);
    if (probe.fits && probe.held_outside.value_or(0) > 0) {
      const bool engine_room =
          !engine_.Probe({ToEngine(*target), type, watch->weight() + *probe.held_outside});
      if (!engine_room) {
        probe.fits = false;
        probe.refusal =
            HeldOutsideProblem(target->tid, type, watch->weight(), probe.held_outside).refusal;
      }
    }
  }
  return out;
}

Result<std::shared_ptr<EventStream>> ReservationManager::Follow(const Peer& caller,
                                                                std::vector<uint64_t> ids,
                                                                bool lifecycle,
                                                                EventStream::Notify notify,
                                                                size_t capacity) {
  {
    MutexLock lock(mu_);
    for (uint64_t id : ids) {
      if (Find(caller, id) == nullptr) return NoSuchReservation(id);
    }
  }
  return events_.Subscribe(caller.session_id, std::move(ids), lifecycle, std::move(notify),
                           capacity);
}

uint64_t ReservationManager::active() const {
  MutexLock lock(mu_);
  return entries_.size();
}

std::string ReservationManager::ShareKey(const TargetSpec& t, const WatchRequest& w,
                                         const ArmHow& how, bool capture) {
  // A perf stop's si_perf_data must carry the caller's own id: never
  // shared. The ptrace backend's sharers need not be told apart (the
  // daemon takes the stops), but share only with the same chosen slot.
  if (how.delivery == Delivery::kStop && !how.ptrace) return "";
  std::string key =
      std::to_string(static_cast<int>(t.kind)) + ":" + std::to_string(t.tid) + ":" +
      std::to_string(t.cpu) + "/" + std::to_string(w.address) + ":" + std::to_string(w.length) +
      ":" + std::to_string(w.access ? static_cast<int>(*w.access) : -1) + ":" +
      (w.over_cover ? "o" : "e") + "/" +
      std::to_string(how.ptrace ? -1 : static_cast<int>(how.delivery)) + (capture ? "/v" : "/");
  if (how.ptrace) key += "/ptrace" + (how.slot ? std::to_string(*how.slot) : std::string());
  // Filters differ per group (the program keeps one per group).
  key += (w.changed ? "/c" : "/") + std::to_string(w.condition.size()) + ":" + w.condition;
  // Last, with its length: a symbol may hold any character.
  return key + "/" + std::to_string(w.symbol.size()) + ":" + w.symbol;
}

}  // namespace hwwatch::daemon
