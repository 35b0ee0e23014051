#include "daemon/reservations.h"

#include <google/protobuf/util/time_util.h>

#include <spdlog/spdlog.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "daemon/authz.h"

namespace hwwatch::daemon {

namespace {

using arch::Status;
using google::protobuf::util::TimeUtil;

constexpr int kCapSysAdmin = 21;
// Ring of a sampling reservation (shared by the registers of its region):
// 2 data pages hold ~140 samples between two reads of the reader thread.
// Rings count against perf_event_mlock_kb unless the daemon has
// CAP_IPC_LOCK, so they are kept small.
constexpr size_t kRingPages = 2;
// The longest lease a reservation may ask for.
constexpr std::chrono::seconds kMaxLease{24 * 3600};
// Bytes of the watched region a hit reports (Hit.value).
constexpr uint64_t kMaxCapture = 64;

v1::SlotType ToProto(arch::SlotType t) {
  return t == arch::SlotType::kInst ? v1::SLOT_TYPE_INST : v1::SLOT_TYPE_DATA;
}

engine::Target ToEngine(const TargetSpec& t) {
  switch (t.kind) {
    case TargetSpec::Kind::kCpu:
      return engine::Target::Cpu(t.cpu);
    case TargetSpec::Kind::kThreadOnCpu:
      return engine::Target::TaskOnCpu(t.tid, t.cpu);
    default:
      return engine::Target::Task(t.tid);
  }
}

arch::PerfTarget ToPerf(const TargetSpec& t) {
  switch (t.kind) {
    case TargetSpec::Kind::kCpu:
      return arch::PerfTarget::Cpu(static_cast<int>(t.cpu));
    case TargetSpec::Kind::kThreadOnCpu:
      return arch::PerfTarget::ThreadOnCpu(t.tid, static_cast<int>(t.cpu));
    default:
      return arch::PerfTarget::Thread(t.tid);
  }
}

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

// Reservation.registers / Admission.registers from a cover.
void SetRegisters(const arch::Cover& cover, google::protobuf::RepeatedPtrField<v1::Register>* out) {
  out->Clear();
  for (const auto& reg : cover.registers) {
    v1::Register* r = out->Add();
    r->set_address(reg.address);
    r->set_length(static_cast<uint32_t>(reg.length));
  }
}

// Reservations with equal keys share their registers; "" never shares (a
// stop's si_perf_data must carry the caller's own id).
std::string ShareKey(const v1::Target& target, const v1::Watch& watch, v1::Delivery delivery,
                     bool capture) {
  if (delivery == v1::DELIVERY_STOP) return "";
  return target.SerializeAsString() + "/" + watch.SerializeAsString() + "/" +
         std::to_string(delivery) + (capture ? "/v" : "/");
}

// The sharing key of a reservation group (see ShareKey): the ptrace
// backend's sharers need not be told apart (the daemon takes the stops),
// but share only with the same backend and chosen slot.
std::string GroupKey(const v1::Target& target, const v1::Watch& watch, v1::Delivery delivery,
                     bool capture, bool ptrace, std::optional<unsigned> slot) {
  if (!ptrace) return ShareKey(target, watch, delivery, capture);
  return ShareKey(target, watch, v1::DELIVERY_DEFAULT, capture) + "/ptrace" +
         (slot ? std::to_string(*slot) : std::string());
}

// Bytes of a watched region that a hit reports.
uint32_t CaptureLength(const arch::Region& region) {
  return static_cast<uint32_t>(std::min<uint64_t>(region.length, kMaxCapture));
}

// The threads of process `pid`, sorted (empty when it is gone).
std::vector<pid_t> ListThreads(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& d :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const std::string name = d.path().filename().string();
    char* end = nullptr;
    const long tid = std::strtol(name.c_str(), &end, 10);
    if (*end == '\0' && tid > 0) out.push_back(static_cast<pid_t>(tid));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The thread exists and has not ended (a zombie leader has).
bool ThreadAlive(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' &&
         line[paren + 2] != 'X';
}

}  // namespace

struct ReservationManager::Entry {
  v1::Reservation proto;
  uint64_t session = 0;
  uid_t uid = 0;
  unsigned weight = 0;
  // Its registers: one Arm per watched thread (a process target has one per
  // thread; thread and CPU targets exactly one), maybe shared.
  std::shared_ptr<Group> group;
  TargetSpec target;
  arch::PerfOptions options;  // how its events were opened
  ArmHow how;
  bool capture = false;  // hits carry the watched bytes
  arch::SlotType type = arch::SlotType::kData;
  arch::Region region;
  arch::Cover cover;
  // How long it outlives its session, and (while orphaned) until when.
  std::chrono::nanoseconds lease{0};
  std::optional<std::chrono::steady_clock::time_point> orphaned_until;
};

ReservationManager::ReservationManager(arch::HostCapabilities caps, engine::LockMode lock,
                                       ReservationLimits limits, std::string journal_dir)
    : caps_(std::move(caps)),
      limits_(limits),
      engine_(engine::Config{std::max(1u, caps_.cpus), caps_.pools, lock, 0}),
      reader_(SampleReader::Sink{
          [this](const SampledEvent& e, const arch::PerfSample& s) { OnHit(e, s); },
          [this](const SampledEvent& e, uint64_t count) {
            v1::Event ev;
            *ev.mutable_time() = Now();
            ev.mutable_lost()->set_count(count);
            events_.PublishGroup(e.reservation, ev, false);
          },
          [this](const SampledEvent& e) {
            std::lock_guard lock(gone_mu_);
            gone_.emplace_back(e.reservation, e.pid);
          },
          [this](const SampledEvent& e, pid_t pid) {
            std::lock_guard lock(gone_mu_);
            execed_.emplace_back(e.reservation, pid);
          }}),
      tracer_(
          std::move(journal_dir),
          Tracer::Sink{// The tracer runs no gRPC code (its file table is its own):
                       // hits are published from the reader's thread.
                       [this](const TraceHit& h) { reader_.Post([this, h] { OnTraceHit(h); }); },
                       [this](uint64_t group, pid_t tid, int) {
                         std::lock_guard lock(gone_mu_);
                         gone_.emplace_back(group, tid);
                       },
                       [this](uint64_t group, pid_t tgid) {
                         std::lock_guard lock(gone_mu_);
                         execed_.emplace_back(group, tgid);
                       }},
          std::vector<int>{reader_.post_fd()}) {
  if (unsigned n = tracer_.leftovers_cleared()) {
    spdlog::warn("cleared debug registers a previous hwwatchd left armed on {} thread(s)", n);
  }
}

ReservationManager::~ReservationManager() {
  // Perf events first, then what the tracer holds: no SIGTRAP may reach a
  // thread after the daemon stops tracing it.
  std::lock_guard lock(mu_);
  for (auto& [id, e] : entries_) {
    for (Arm& arm : e->group->arms) DisarmOne(arm);
    e->group->arms.clear();
  }
}

Refused ReservationManager::Fail(Code code, std::string message,
                                 std::optional<v1::Refusal> refusal) {
  std::lock_guard lock(mu_);
  ++refusals_;
  if (refusal && refusal->explanation().empty()) refusal->set_explanation(message);
  return Refused{Problem{code, std::move(message)}, std::move(refusal)};
}

v1::Refusal ReservationManager::FromEngine(const engine::Refusal& r) const {
  v1::Refusal out;
  switch (r.reason) {
    case engine::Refusal::Reason::kCpuFull:
      out.set_reason(v1::Refusal::CPU_FULL);
      break;
    case engine::Refusal::Reason::kTaskFull:
      out.set_reason(v1::Refusal::TASK_FULL);
      break;
    case engine::Refusal::Reason::kInvalid:
      out.set_reason(v1::Refusal::REASON_UNSPECIFIED);
      break;
  }
  out.set_slot_type(ToProto(r.type));
  if (r.cpu) out.set_cpu(*r.cpu);
  if (r.tid) out.set_tid(*r.tid);
  out.set_slots(r.slots);
  out.set_cpu_pinned(r.cpu_pinned);
  out.set_task_pinned(r.task_pinned);
  out.set_weight(r.weight);
  out.set_explanation(r.Explain());
  return out;
}

ProcCreds ReservationManager::SessionCreds(const Peer& caller) const {
  std::lock_guard lock(creds_mu_);
  auto it = session_creds_.find(caller.session_id);
  if (it != session_creds_.end()) return it->second;
  ProcCreds c = CallerCreds(caller);
  session_creds_.emplace(caller.session_id, c);
  return c;
}

bool ReservationManager::InCpuGroup(const Peer& caller, const ProcCreds& me) const {
  const gid_t g = limits_.cpu_group;
  if (g == static_cast<gid_t>(-1)) return false;
  return caller.creds.gid == g ||
         std::find(me.groups.begin(), me.groups.end(), g) != me.groups.end();
}

std::optional<Refused> ReservationManager::Authorize(const Peer& caller, const TargetSpec& target,
                                                     const WatchSpec& watch) const {
  const ProcCreds me = SessionCreds(caller);
  const bool kernel_address = watch.region.address >= UserAddressLimit(caps_.arch);
  if (!target.is_task() || kernel_address) {
    const bool allowed = caller.creds.uid == 0 || me.HasCap(kCapPerfmon) ||
                         me.HasCap(kCapSysAdmin) || InCpuGroup(caller, me);
    if (!allowed) {
      v1::Refusal r;
      r.set_reason(v1::Refusal::NOT_PERMITTED);
      return Refused{{Code::kPermissionDenied,
                      "CPU targets and kernel addresses need root, CAP_PERFMON or the "
                      "configured group"},
                     r};
    }
    if (!target.is_task()) return std::nullopt;
  }
  const int scope = ReadYamaScope();
  // CAP_SYS_PTRACE may attach to anything below Yama scope 3, whatever the
  // target's credentials: no need to read them (a missing target is found
  // when arming).
  if (me.HasCap(kCapSysPtrace) && scope < 3) return std::nullopt;
  auto t = ReadProcCreds(target.tid);
  if (!t) return Refused{{Code::kNotFound, "no thread " + std::to_string(target.tid)}, {}};
  YamaRelation rel;
  if (scope == 1) rel.target_is_descendant = IsDescendant(target.tid, caller.creds.pid);
  Decision d = MayPtrace(me, *t, scope, rel);
  if (d.allowed) return std::nullopt;
  v1::Refusal r;
  r.set_reason(v1::Refusal::NOT_PERMITTED);
  r.set_tid(target.tid);
  return Refused{{Code::kPermissionDenied,
                  "you may not watch thread " + std::to_string(target.tid) + ": " + d.reason},
                 r};
}

TraceUse ReservationManager::UseFor(uint64_t group, const WatchSpec& watch, bool capture,
                                    const ArmHow& how) const {
  TraceUse use;
  use.group = group;
  use.perf_stop = how.daemon_stops;
  for (unsigned i = 0; i < watch.cover.needed(); ++i) {
    use.specs.push_back(watch.cover.Spec(caps_.arch, i));
  }
  if (capture) {
    use.capture_address = watch.region.address;
    use.capture_length = CaptureLength(watch.region);
  }
  return use;
}

std::variant<ReservationManager::Arm, Refused> ReservationManager::ArmThread(
    const TargetSpec& t, const WatchSpec& watch, arch::SlotType type, arch::PerfOptions opts,
    uint64_t reservation, bool capture, const ArmHow& how) {
  const unsigned weight = watch.weight();
  if (how.ptrace) {
    // Accounted per debug register index (see TakePtraceSlots), armed by
    // the tracer in exactly those.
    auto taken = TakePtraceSlots(t.tid, type, weight, how.slot, nullptr);
    if (auto* no = std::get_if<Refused>(&taken)) return std::move(*no);
    TraceUse use = UseFor(reservation, watch, capture, how);
    use.slots = std::get<std::vector<unsigned>>(taken);
    auto armed = tracer_.Add(t.tid, use);
    PutPtraceSlots(t.tid, type, use.slots);
    if (!armed.ok()) return ArmError(armed.error(), t, weight);
    // The tracer may have armed it already (a followed process's new
    // thread): account what it used.
    auto held = TakePtraceSlots(t.tid, type, weight, std::nullopt, &*armed);
    if (auto* no = std::get_if<Refused>(&held)) {
      tracer_.Remove(t.tid, reservation);
      return std::move(*no);
    }
    Arm arm;
    arm.tid = t.tid;
    arm.traced_group = reservation;
    arm.slots = *armed;
    arm.slot_type = type;
    return arm;
  }
  engine::Admission a = engine_.Reserve({ToEngine(t), type, weight});
  if (!a) {
    v1::Refusal r = FromEngine(a.refusal());
    return Refused{{Code::kResourceExhausted, r.explanation()}, r};
  }
  if (reservation == 0) reservation = a.id();
  opts.sig_data = reservation;
  Arm arm;
  arm.tid = t.is_task() ? t.tid : -1;
  arm.engine_id = a.id();
  arch::Error err;
  bool failed = false;
  if (how.traced()) {
    // The tracer traces the thread, then opens the perf stop events itself
    // (in its own file table: see tracer.h).
    auto slots = tracer_.Add(t.tid, UseFor(reservation, watch, capture, how));
    if (slots.ok()) {
      arm.traced_group = reservation;
      arm.slots = *slots;
    } else {
      err = slots.error();
      failed = true;
    }
  }
  for (unsigned i = 0; i < watch.cover.needed() && !failed && !how.traced(); ++i) {
    // The ring's own event also reports the task's exec (task targets).
    arch::PerfOptions these = opts;
    these.exec_records = opts.sampling && i == 0 && t.is_task();
    auto bp = arch::PerfBreakpoint::Open(watch.cover.Spec(caps_.arch, i), ToPerf(t), these);
    if (!bp) {
      err = bp.error();
      failed = true;
    } else if (!opts.sampling) {
      arm.events.push_back(std::move(bp.value()));
    } else if (!arm.sampled.empty()) {
      // Further registers of the region write into the first one's ring.
      if (Status out = bp->SetOutput(arm.sampled.front()->event); out.ok()) {
        arm.events.push_back(std::move(bp.value()));
      } else {
        err = out.error();
        failed = true;
      }
    } else if (auto ring = arch::PerfRingBuffer::Map(
                   bp->fd(), kRingPages, arch::BuildBreakpointAttr(bp->spec(), opts).sample_type)) {
      auto se = std::make_shared<SampledEvent>(SampledEvent{
          std::move(bp.value()), std::move(ring.value()), reservation, arm.tid, 0, 0, {}});
      if (capture) {
        se->capture_address = watch.region.address;
        se->capture_length = CaptureLength(watch.region);
      }
      for (const auto& reg : watch.cover.registers) se->registers.push_back(reg.address);
      arm.sampled.push_back(std::move(se));
    } else {
      err = ring.error();
      failed = true;
    }
  }
  if (!failed) {
    for (const auto& se : arm.sampled) {
      if (std::string why = reader_.Add(se); !why.empty()) {
        err = arch::Error{EIO, "cannot follow the samples: " + why};
        failed = true;
      }
    }
  }
  if (!failed) return arm;
  // Roll back: close what was armed, give the engine its slots back.
  DisarmOne(arm);
  return ArmError(err, t, weight);
}

Refused ReservationManager::ArmError(const arch::Error& err, const TargetSpec& t,
                                     unsigned weight) const {
  if (err.Is(ENOSPC)) {
    v1::Refusal r;
    r.set_reason(v1::Refusal::HELD_OUTSIDE);
    r.set_weight(weight);
    if (t.is_task()) r.set_tid(t.tid);
    std::string m =
        "the kernel has no free slot although hwwatchd's accounting had room: the registers are "
        "held outside hwwatchd (a debugger, perf, another tracer)";
    r.set_explanation(m);
    return Refused{{Code::kResourceExhausted, m}, r};
  }
  if (err.Is(ESRCH)) return Refused{{Code::kNotFound, "the target went away: " + err.message}, {}};
  if (err.Is(EPERM)) {
    return Refused{{Code::kFailedPrecondition,
                    "thread " + std::to_string(t.tid) +
                        " is traced by another process, and hwwatchd must be its tracer for "
                        "this (ptrace backend, or stops on an untraced thread): " +
                        err.message},
                   {}};
  }
  if (err.Is(EBUSY)) return Refused{{Code::kFailedPrecondition, err.message}, {}};
  if (err.Is(EAGAIN)) return Refused{{Code::kFailedPrecondition, err.message}, {}};
  if (err.Is(EINVAL)) {
    return Refused{{Code::kInvalidArgument, "the kernel refused: " + err.message}, {}};
  }
  return Refused{{Code::kInternal, "arming failed: " + err.message}, {}};
}

std::variant<std::vector<unsigned>, Refused> ReservationManager::TakePtraceSlots(
    pid_t tid, arch::SlotType type, unsigned weight, std::optional<unsigned> first,
    const std::vector<unsigned>* exact) {
  const arch::SlotPool* pool = caps_.PoolFor(type);
  const unsigned count = std::min<unsigned>(pool != nullptr ? pool->slots : 0, 16);
  if (pool != nullptr && pool->mixed()) type = arch::SlotType::kData;  // one bank (x86)
  std::lock_guard lock(ptrace_mu_);
  PtraceBank& bank = ptrace_banks_[{tid, type}];
  const std::string on = " on thread " + std::to_string(tid);
  std::vector<unsigned> pick;
  if (exact != nullptr) {
    pick = *exact;
  } else {
    if (first) {
      if (*first >= count) {
        return Refused{
            {Code::kInvalidArgument, "slot " + std::to_string(*first) +
                                         " does not exist: this host has " + std::to_string(count)},
            {}};
      }
      pick.push_back(*first);
    }
    // Registers the kernel still holds for us first: they cost no new slot.
    for (bool registered : {true, false}) {
      for (unsigned s = 0; s < count && pick.size() < weight; ++s) {
        if (!bank.in_use[s] && (bank.registered[s] != 0) == registered &&
            std::find(pick.begin(), pick.end(), s) == pick.end()) {
          pick.push_back(s);
        }
      }
    }
    if (pick.size() < weight) {
      v1::Refusal r;
      r.set_reason(v1::Refusal::TASK_FULL);
      r.set_tid(tid);
      r.set_weight(weight);
      r.set_slots(count);
      std::string m = "hwwatchd's ptrace watches use every debug register" + on;
      r.set_explanation(m);
      return Refused{{Code::kResourceExhausted, m}, r};
    }
  }
  for (unsigned s : pick) {
    if (s >= count || bank.in_use[s]) {
      return Refused{{Code::kFailedPrecondition,
                      "slot " + std::to_string(s) + " is already used by another reservation" + on},
                     {}};
    }
  }
  std::vector<unsigned> added;
  for (unsigned s : pick) {
    if (bank.registered[s] != 0) continue;
    engine::Admission a = engine_.Reserve({engine::Target::Task(tid), type, 1});
    if (!a) {
      for (unsigned undo : added) {
        engine_.Release(bank.registered[undo]);
        bank.registered[undo] = 0;
      }
      v1::Refusal r = FromEngine(a.refusal());
      return Refused{{Code::kResourceExhausted, r.explanation()}, r};
    }
    bank.registered[s] = a.id();
    added.push_back(s);
  }
  for (unsigned s : pick) bank.in_use[s] = true;
  return pick;
}

void ReservationManager::PutPtraceSlots(pid_t tid, arch::SlotType type,
                                        const std::vector<unsigned>& slots) {
  if (const arch::SlotPool* pool = caps_.PoolFor(type); pool != nullptr && pool->mixed()) {
    type = arch::SlotType::kData;
  }
  std::lock_guard lock(ptrace_mu_);
  auto it = ptrace_banks_.find({tid, type});
  if (it == ptrace_banks_.end()) return;
  for (unsigned s : slots) {
    if (s < it->second.in_use.size()) it->second.in_use[s] = false;
  }
}

void ReservationManager::ForgetPtraceThread(pid_t tid) {
  std::lock_guard lock(ptrace_mu_);
  for (arch::SlotType type : {arch::SlotType::kData, arch::SlotType::kInst}) {
    auto it = ptrace_banks_.find({tid, type});
    if (it == ptrace_banks_.end()) continue;
    for (engine::ReservationId id : it->second.registered) {
      if (id != 0) engine_.Release(id);
    }
    ptrace_banks_.erase(it);
  }
}

void ReservationManager::DisarmOne(Arm& arm) {
  for (const auto& se : arm.sampled) reader_.Remove(*se);
  arm.sampled.clear();  // closing the perf events frees the kernel's slots
  arm.events.clear();
  // Then the tracer clears its registers and lets go.
  if (arm.traced_group != 0) tracer_.Remove(arm.tid, arm.traced_group);
  arm.traced_group = 0;
  if (!arm.slots.empty()) PutPtraceSlots(arm.tid, arm.slot_type, arm.slots);
  arm.slots.clear();
  if (arm.engine_id != 0) engine_.Release(arm.engine_id);
  arm.engine_id = 0;
}

Reply<v1::Reservation> ReservationManager::Reserve(const Peer& caller,
                                                   const v1::ReserveRequest& req) {
  if (req.has_reclaim()) return Reclaim(caller, req.reclaim());
  if (req.lease().seconds() < 0 || req.lease().nanos() < 0 ||
      req.lease().seconds() > kMaxLease.count()) {
    return Fail(Code::kInvalidArgument, "a lease is 0 to " + std::to_string(kMaxLease.count()) +
                                            " seconds, not " +
                                            std::to_string(req.lease().seconds()));
  }
  auto target = CheckTarget(req.target(), caps_.cpus);
  if (!target) return Fail(target.problem().code, target.problem().message);
  if (!v1::Backend_IsValid(req.backend())) {
    return Fail(Code::kInvalidArgument, "unknown backend " + std::to_string(req.backend()));
  }
  if (!v1::Delivery_IsValid(req.delivery())) {
    return Fail(Code::kInvalidArgument, "unknown delivery " + std::to_string(req.delivery()));
  }
  ArmHow how;
  how.ptrace = req.backend() == v1::BACKEND_PTRACE || req.has_slot();
  if (req.has_slot()) how.slot = req.slot();
  if (how.ptrace && req.backend() == v1::BACKEND_PERF) {
    return Fail(Code::kInvalidArgument, "a chosen slot needs the ptrace backend, not perf");
  }
  if (how.ptrace &&
      (target->kind == TargetSpec::Kind::kCpu || target->kind == TargetSpec::Kind::kThreadOnCpu)) {
    return Fail(Code::kInvalidArgument,
                "the ptrace backend watches threads and processes; CPUs need perf");
  }
  // perf's default delivery is samples; ptrace always stops the thread
  // (the daemon takes the trap and reports the hit).
  const v1::Delivery delivery = how.ptrace || req.delivery() == v1::DELIVERY_DEFAULT
                                    ? (how.ptrace ? v1::DELIVERY_STOP : v1::DELIVERY_SAMPLES)
                                    : req.delivery();
  if (how.ptrace && req.delivery() != v1::DELIVERY_DEFAULT && req.delivery() != v1::DELIVERY_STOP) {
    return Fail(Code::kInvalidArgument,
                "the ptrace backend delivers hits as stops that hwwatchd takes; samples and "
                "counts need perf");
  }
  auto watch = CheckWatch(req.watch(), *target, caps_);
  if (!watch) {
    std::optional<v1::Refusal> r;
    if (watch.problem().code == Code::kResourceExhausted) {
      r.emplace();
      r->set_reason(v1::Refusal::REGION_TOO_LARGE);
      r->set_slot_type(ToProto(arch::SlotTypeOf(req.watch().access() == v1::ACCESS_EXECUTE
                                                    ? arch::Access::kExecute
                                                    : arch::Access::kWrite)));
    }
    return Fail(watch.problem().code, watch.problem().message, r);
  }
  if (auto denied = Authorize(caller, *target, *watch)) {
    return Fail(denied->problem.code, denied->problem.message, denied->refusal);
  }
  if (delivery == v1::DELIVERY_STOP && !how.ptrace) {
    // A SIGTRAP nobody waits for kills the target: the caller's debugger
    // takes it, or else hwwatchd traces the thread and takes it itself.
    if (!target->is_task()) {
      return Fail(Code::kInvalidArgument, "stop delivery needs a thread target, not a CPU");
    }
    auto t = ReadProcCreds(target->tid);
    if (!t) return Fail(Code::kNotFound, "no thread " + std::to_string(target->tid));
    how.daemon_stops = t->tracer_pid == 0 || tracer_.Traces(target->tid);
  }
  const unsigned weight = watch->weight();
  const arch::SlotType type = arch::SlotTypeOf(watch->region.access);
  {
    // Quota first, so concurrent requests of one uid cannot overshoot it.
    std::lock_guard lock(mu_);
    unsigned& held = held_by_uid_[caller.creds.uid];
    if (caller.creds.uid != 0 && held + weight > limits_.slots_per_uid) {
      return QuotaRefusal(caller.creds.uid, held, weight);
    }
    held += weight;
  }
  auto unquota = [&] {
    std::lock_guard lock(mu_);
    held_by_uid_[caller.creds.uid] -= weight;
  };
  auto entry = std::make_unique<Entry>();
  entry->group = std::make_shared<Group>();
  Group& g = *entry->group;
  entry->capture = req.capture_value() && target->is_task();
  // The same watch on the same target shares the registers.
  g.key = GroupKey(req.target(), req.watch(), delivery, entry->capture, how.ptrace, how.slot);
  arch::PerfOptions opts;
  opts.exclude_kernel = target->is_task();
  opts.sampling = delivery == v1::DELIVERY_SAMPLES;
  opts.sigtrap = delivery == v1::DELIVERY_STOP && !how.ptrace;
  // A process: every thread it has now (later ones are found by Reap()).
  std::vector<TargetSpec> threads;
  if (target->kind == TargetSpec::Kind::kProcess) {
    for (pid_t tid : ListThreads(target->tid))
      threads.push_back({TargetSpec::Kind::kThread, tid, 0});
    if (threads.empty()) {
      unquota();
      return Fail(Code::kNotFound, "no process " + std::to_string(target->tid));
    }
  } else {
    threads.push_back(*target);
  }
  std::shared_ptr<Group> joined;
  uint64_t id = 0;
  if (!g.key.empty()) {
    std::lock_guard lock(mu_);
    if (auto it = groups_.find(g.key); it != groups_.end()) {
      joined = it->second;
      id = next_shared_id_++;
      joined->members.push_back(id);
      events_.SetOwner(id, caller.session_id);
      events_.SetMembers(joined->id, joined->members);
    }
  }
  if (!joined && how.ptrace) {
    // No engine admission of its own names it (slots are per index).
    id = next_ptrace_id_++;
    events_.SetOwner(id, caller.session_id);
  }
  for (const TargetSpec& t : threads) {
    if (joined) break;
    auto arm = ArmThread(t, *watch, type, opts, id, entry->capture, how);
    if (auto* refused = std::get_if<Refused>(&arm)) {
      if (target->kind == TargetSpec::Kind::kProcess && refused->problem.code == Code::kNotFound) {
        continue;  // a thread that ended meanwhile
      }
      for (Arm& done : g.arms) DisarmOne(done);
      if (id != 0) events_.Forget(id);
      unquota();
      std::lock_guard lock(mu_);
      ++refusals_;
      return std::move(*refused);
    }
    g.arms.push_back(std::get<Arm>(std::move(arm)));
    if (id == 0) {
      id = g.arms.front().engine_id;
      events_.SetOwner(id, caller.session_id);
    }
  }
  if (!joined && g.arms.empty()) {
    if (id != 0) events_.Forget(id);
    unquota();
    return Fail(Code::kNotFound, "process " + std::to_string(target->tid) + " ended");
  }
  if (!joined && how.traced() && target->kind == TargetSpec::Kind::kProcess) {
    // Threads it starts from now on are armed (ptrace) or held (stops)
    // before they run; Reap() accounts them.
    TraceUse use = UseFor(id, *watch, entry->capture, how);
    use.slots = g.arms.front().slots;  // a new thread has every index free
    tracer_.Follow(target->tid, use);
    g.followed_tgid = target->tid;
  }
  opts.sig_data = id;
  if (joined) {
    opts.sig_data = joined->id;
    entry->group = joined;
  } else {
    g.id = id;
    g.members.push_back(id);
  }
  v1::Reservation& p = entry->proto;
  p.set_id(id);
  *p.mutable_target() = req.target();
  *p.mutable_watch() = req.watch();
  p.set_backend(how.ptrace ? v1::BACKEND_PTRACE : v1::BACKEND_PERF);
  p.set_delivery(delivery);
  p.set_slot_type(ToProto(type));
  p.set_weight(weight);
  SetRegisters(watch->cover, p.mutable_registers());

  v1::Owner* o = p.mutable_owner();
  o->set_uid(caller.creds.uid);
  o->set_gid(caller.creds.gid);
  o->set_pid(caller.creds.pid);
  o->set_session_id(caller.session_id);
  *p.mutable_created() = Now();
  p.set_label(req.label());
  p.set_sharers(1);
  *p.mutable_lease() = req.lease();
  entry->lease =
      std::chrono::seconds(req.lease().seconds()) + std::chrono::nanoseconds(req.lease().nanos());
  entry->session = caller.session_id;
  entry->target = *target;
  entry->options = opts;
  entry->how = how;
  entry->uid = caller.creds.uid;
  entry->weight = weight;
  entry->type = type;
  entry->region = watch->region;
  entry->cover = watch->cover;
  std::lock_guard lock(mu_);
  Group& mine = *entry->group;
  if (how.ptrace && target->kind == TargetSpec::Kind::kThread && !mine.arms.empty()) {
    // The debug register index of each register.
    const auto& slots = mine.arms.front().slots;
    for (int i = 0; i < p.registers_size() && i < static_cast<int>(slots.size()); ++i) {
      p.mutable_registers(i)->set_slot(slots[static_cast<size_t>(i)]);
    }
  }
  v1::Reservation out = p;
  if (!joined && !mine.key.empty()) groups_.emplace(mine.key, entry->group);  // first one wins
  Entry& added = *entry;
  entries_.emplace(id, std::move(entry));
  UpdateSharers(mine);
  out.set_sharers(static_cast<uint32_t>(mine.members.size()));
  if (ended_sessions_.count(caller.session_id) != 0) {
    // The caller hung up while this was being armed: SessionEnded() has
    // run already and could not see it.
    if (added.lease.count() > 0) {
      Orphan(added, std::chrono::steady_clock::now());
    } else {
      Disarm(added, "session closed");
      entries_.erase(id);
    }
  }
  return out;
}

void ReservationManager::Orphan(Entry& e, std::chrono::steady_clock::time_point now) {
  e.session = 0;
  e.orphaned_until = now + e.lease;
  e.proto.set_orphaned(true);
  events_.SetOwner(e.proto.id(), 0);
}

void ReservationManager::UpdateSharers(const Group& g) {
  for (uint64_t m : g.members) {
    if (auto it = entries_.find(m); it != entries_.end()) {
      it->second->proto.set_sharers(static_cast<uint32_t>(g.members.size()));
    }
  }
}

void ReservationManager::OnHit(const SampledEvent& e, const arch::PerfSample& s) {
  v1::Event ev;
  *ev.mutable_time() = Now();
  v1::Hit* h = ev.mutable_hit();
  h->set_reservation_id(e.reservation);
  h->set_tid(static_cast<int32_t>(s.tid));
  h->set_ip(s.ip);
  h->set_address(s.addr);
  // Which register of the region matched: samples carry its address.
  for (size_t i = 0; i < e.registers.size(); ++i) {
    if (e.registers[i] == s.addr) h->set_slot(static_cast<uint32_t>(i));
  }
  if (e.capture_length > 0) {
    // The access is done when the sample is read (x86 traps after it; arm64
    // perf steps over before resuming the task).
    std::string value(e.capture_length, '\0');
    iovec local{value.data(), value.size()};
    iovec remote{reinterpret_cast<void*>(e.capture_address), value.size()};
    if (process_vm_readv(e.pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(value.size())) {
      h->set_value(std::move(value));
    }
  }
  events_.PublishGroup(e.reservation, ev, false);
}

void ReservationManager::OnTraceHit(const TraceHit& h) {
  v1::Event ev;
  *ev.mutable_time() = Now();
  v1::Hit* hit = ev.mutable_hit();
  hit->set_reservation_id(h.group);
  hit->set_tid(h.tid);
  hit->set_ip(h.ip);
  hit->set_address(h.address);
  if (h.slot) hit->set_slot(*h.slot);
  if (h.value) hit->set_value(*h.value);
  events_.PublishGroup(h.group, ev, false);
}

void ReservationManager::Disarm(Entry& e, const char* why) {
  Group& g = *e.group;
  std::erase(g.members, e.proto.id());
  if (g.members.empty()) {
    // The last sharer: the registers go.
    if (g.followed_tgid != 0) tracer_.Unfollow(g.followed_tgid, g.id);
    g.followed_tgid = 0;
    for (Arm& arm : g.arms) DisarmOne(arm);
    g.arms.clear();
    if (auto it = groups_.find(g.key); it != groups_.end() && it->second == e.group) {
      groups_.erase(it);
    }
  } else {
    UpdateSharers(g);
  }
  events_.SetMembers(g.id, g.members);
  held_by_uid_[e.uid] -= e.weight;
  v1::Event ev;
  *ev.mutable_time() = Now();
  ev.mutable_released()->set_reservation_id(e.proto.id());
  ev.mutable_released()->set_why(why);
  events_.Publish(e.proto.id(), ev, true);
  events_.Forget(e.proto.id());
}

Refused ReservationManager::QuotaRefusal(uid_t uid, unsigned held, unsigned weight, bool modify) {
  v1::Refusal r;
  r.set_reason(v1::Refusal::QUOTA_EXCEEDED);
  r.set_quota(limits_.slots_per_uid);
  r.set_held(held);
  r.set_weight(weight);
  ++refusals_;
  std::string m =
      "uid " + std::to_string(uid) + " holds " + std::to_string(held) + " of its " +
      std::to_string(limits_.slots_per_uid) + " registers" +
      (modify ? " besides this reservation; its new watch needs " : "; this watch needs ") +
      std::to_string(weight);
  r.set_explanation(m);
  return Refused{{Code::kResourceExhausted, std::move(m)}, std::move(r)};
}

TargetSpec ReservationManager::WhereArmed(const Entry& e, const Arm& arm) {
  return e.target.kind == TargetSpec::Kind::kProcess
             ? TargetSpec{TargetSpec::Kind::kThread, arm.tid, 0}
             : e.target;
}

Reply<v1::Reservation> ReservationManager::Modify(const Peer& caller,
                                                  const v1::ModifyRequest& req) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(req.id());
  if (it == entries_.end() || (caller.creds.uid != 0 && it->second->uid != caller.creds.uid)) {
    ++refusals_;
    return Refused{{Code::kNotFound, "you hold no reservation " + std::to_string(req.id())}, {}};
  }
  Entry& e = *it->second;
  auto refuse = [this](Refused r) {
    ++refusals_;
    if (r.refusal && r.refusal->explanation().empty())
      r.refusal->set_explanation(r.problem.message);
    return r;
  };
  if (e.group->members.size() > 1) {
    return refuse({{Code::kFailedPrecondition,
                    "reservation " + std::to_string(req.id()) + " shares its registers with " +
                        std::to_string(e.group->members.size() - 1) +
                        " other reservation(s); release it and reserve the new watch instead"},
                   {}});
  }
  auto watch = CheckWatch(req.watch(), e.target, caps_);
  if (!watch) {
    std::optional<v1::Refusal> r;
    if (watch.problem().code == Code::kResourceExhausted) {
      r.emplace();
      r->set_reason(v1::Refusal::REGION_TOO_LARGE);
    }
    return refuse({watch.problem(), std::move(r)});
  }
  const unsigned weight = watch->weight();
  const arch::SlotType type = arch::SlotTypeOf(watch->region.access);
  const unsigned others = held_by_uid_[e.uid] - e.weight;  // the uid's other registers
  if (e.uid != 0 && others + weight > limits_.slots_per_uid) {
    return QuotaRefusal(e.uid, others, weight, /*modify=*/true);
  }
  // Every thread moves to the new watch, or none does.
  std::optional<Refused> no;
  if (e.how.ptrace) {
    no = ModifyPtrace(e, *watch, type);
  } else {
    no = ModifyInEngine(e, type, weight);
    if (!no) no = e.how.daemon_stops ? ModifyDaemonStops(e, *watch) : ModifyPerf(e, *watch);
  }
  if (no) return refuse(std::move(*no));
  return CommitModify(e, req.watch(), *watch, type);
}

std::optional<Refused> ReservationManager::ModifyPtrace(Entry& e, const WatchSpec& watch,
                                                        arch::SlotType type) {
  // Per thread: slots taken as if the old watch were released, then one
  // stop that swaps the registers. A failure puts back the threads done.
  const unsigned weight = watch.weight();
  const WatchSpec old_watch{e.region, arch::CoverMode::kExact, e.cover};
  std::vector<std::pair<Arm*, std::vector<unsigned>>> done;  // (arm, its old slots)
  std::optional<Refused> failed;
  for (Arm& arm : e.group->arms) {
    PutPtraceSlots(arm.tid, arm.slot_type, arm.slots);
    auto taken = TakePtraceSlots(arm.tid, type, weight, e.how.slot, nullptr);
    if (auto* no = std::get_if<Refused>(&taken)) {
      (void)TakePtraceSlots(arm.tid, arm.slot_type, e.weight, std::nullopt, &arm.slots);
      failed = std::move(*no);
      break;
    }
    TraceUse use = UseFor(e.group->id, watch, e.capture, e.how);
    use.slots = std::get<std::vector<unsigned>>(taken);
    if (Status st = tracer_.Replace(arm.tid, use); !st.ok()) {
      PutPtraceSlots(arm.tid, type, use.slots);
      (void)TakePtraceSlots(arm.tid, arm.slot_type, e.weight, std::nullopt, &arm.slots);
      failed = ArmError(st.error(), WhereArmed(e, arm), weight);
      break;
    }
    done.emplace_back(&arm, arm.slots);
    arm.slots = use.slots;
    arm.slot_type = type;
  }
  if (failed) {
    for (auto& [arm, old_slots] : done) {
      PutPtraceSlots(arm->tid, arm->slot_type, arm->slots);
      (void)TakePtraceSlots(arm->tid, e.type, e.weight, std::nullopt, &old_slots);
      TraceUse use = UseFor(e.group->id, old_watch, e.capture, e.how);
      use.slots = old_slots;
      (void)tracer_.Replace(arm->tid, use);
      arm->slots = old_slots;
      arm->slot_type = e.type;
    }
  }
  return failed;
}

std::optional<Refused> ReservationManager::ModifyInEngine(Entry& e, arch::SlotType type,
                                                          unsigned weight) {
  // Admitted as the kernel would, on every thread: as if the old watch
  // were released. One refusal puts back the threads already changed.
  std::vector<Arm>& arms = e.group->arms;
  for (size_t i = 0; i < arms.size(); ++i) {
    if (auto no =
            engine_.Modify(arms[i].engine_id, {ToEngine(WhereArmed(e, arms[i])), type, weight})) {
      RestoreInEngine(e, i);
      v1::Refusal r = FromEngine(*no);
      return Refused{{Code::kResourceExhausted, r.explanation()}, std::move(r)};
    }
  }
  return std::nullopt;
}

void ReservationManager::RestoreInEngine(const Entry& e, size_t arms) {
  for (size_t k = 0; k < arms; ++k) {
    const Arm& arm = e.group->arms[k];
    if (engine_.Modify(arm.engine_id, {ToEngine(WhereArmed(e, arm)), e.type, e.weight})) {
      spdlog::error("reservation {}: the engine refused to restore it after a failed modify",
                    e.proto.id());
    }
  }
}

std::optional<Refused> ReservationManager::ModifyDaemonStops(Entry& e, const WatchSpec& watch) {
  // The tracer replaces each thread's events; a failure puts back the
  // threads done, and the engine.
  const WatchSpec old_watch{e.region, arch::CoverMode::kExact, e.cover};
  std::vector<Arm>& arms = e.group->arms;
  for (size_t a = 0; a < arms.size(); ++a) {
    if (Status st = tracer_.Replace(arms[a].tid, UseFor(e.group->id, watch, e.capture, e.how));
        !st.ok()) {
      for (size_t k = 0; k < a; ++k) {
        (void)tracer_.Replace(arms[k].tid, UseFor(e.group->id, old_watch, e.capture, e.how));
      }
      RestoreInEngine(e, arms.size());
      return ArmError(st.error(), WhereArmed(e, arms[a]), watch.weight());
    }
  }
  return std::nullopt;
}

std::optional<Refused> ReservationManager::ModifyPerf(Entry& e, const WatchSpec& watch) {
  // The kernel: move each thread's registers in place, open or close the
  // difference. Any failure puts every moved register back and the engine
  // too, so the caller sees the new watch or the old one, never a mix.
  struct Change {
    std::vector<arch::PerfBreakpoint*> events;
    std::vector<arch::BreakpointSpec> old_specs;
    size_t moved = 0;
    std::vector<arch::PerfBreakpoint> added;
  };
  const unsigned weight = watch.weight();
  std::vector<Arm>& arms = e.group->arms;
  std::vector<Change> changes(arms.size());
  std::optional<arch::Error> failure;
  for (size_t a = 0; a < arms.size() && !failure; ++a) {
    Arm& arm = arms[a];
    Change& c = changes[a];
    for (auto& se : arm.sampled) c.events.push_back(&se->event);
    for (auto& ev : arm.events) c.events.push_back(&ev);
    for (auto* ev : c.events) c.old_specs.push_back(ev->spec());
    for (; c.moved < std::min<size_t>(c.events.size(), weight); ++c.moved) {
      if (Status st = c.events[c.moved]->Modify(watch.cover.Spec(caps_.arch, c.moved)); !st.ok()) {
        failure = st.error();
        break;
      }
    }
    for (size_t i = c.events.size(); !failure && i < weight; ++i) {
      auto bp = arch::PerfBreakpoint::Open(watch.cover.Spec(caps_.arch, static_cast<unsigned>(i)),
                                           ToPerf(WhereArmed(e, arm)), e.options);
      if (bp && !arm.sampled.empty()) {
        if (Status st = bp->SetOutput(arm.sampled.front()->event); !st.ok()) bp = st.error();
      }
      if (!bp) {
        failure = bp.error();
        break;
      }
      c.added.push_back(std::move(bp.value()));
    }
  }
  if (failure) {
    for (Change& c : changes) {
      c.added.clear();
      for (size_t i = 0; i < c.moved; ++i) (void)c.events[i]->Modify(c.old_specs[i]);
    }
    RestoreInEngine(e, arms.size());
    if (failure->Is(ENOSPC)) {
      v1::Refusal r;
      r.set_reason(v1::Refusal::HELD_OUTSIDE);
      r.set_weight(weight);
      return Refused{{Code::kResourceExhausted,
                      "the kernel has no free slot for the new watch: registers are held outside "
                      "hwwatchd; the old watch stays"},
                     std::move(r)};
    }
    if (failure->Is(ESRCH)) {
      return Refused{{Code::kNotFound,
                      "a watched thread ended during the modify; the old watch stays on the "
                      "others: " +
                          failure->message},
                     {}};
    }
    return Refused{
        {failure->Is(EINVAL) ? Code::kInvalidArgument : Code::kInternal,
         "the kernel refused the new watch (" + failure->message + "); the old one stays"},
        {}};
  }
  // Done: drop registers the new watch does not need, adopt new ones.
  std::vector<uint64_t> regs;
  for (const auto& reg : watch.cover.registers) regs.push_back(reg.address);
  const uint64_t capture_address = e.capture ? watch.region.address : 0;
  const uint32_t capture_length = e.capture ? CaptureLength(watch.region) : 0;
  for (size_t a = 0; a < arms.size(); ++a) {
    Arm& arm = arms[a];
    if (changes[a].events.size() > weight) {
      const size_t keep_events = weight - std::min<size_t>(weight, arm.sampled.size());
      arm.events.erase(arm.events.begin() + static_cast<std::ptrdiff_t>(keep_events),
                       arm.events.end());
    }
    for (auto& bp : changes[a].added) arm.events.push_back(std::move(bp));
    for (auto& se : arm.sampled) {
      reader_.Update(*se, [&](SampledEvent& s) {
        s.registers = regs;
        s.capture_address = capture_address;
        s.capture_length = capture_length;
      });
    }
  }
  return std::nullopt;
}

v1::Reservation ReservationManager::CommitModify(Entry& e, const v1::Watch& request,
                                                 const WatchSpec& watch, arch::SlotType type) {
  const unsigned weight = watch.weight();
  unsigned& held = held_by_uid_[e.uid];
  held = held - e.weight + weight;
  e.weight = weight;
  e.type = type;
  e.region = watch.region;
  e.cover = watch.cover;
  // Now a different watch: shareable under its new key.
  Group& g = *e.group;
  if (!g.key.empty()) {
    if (auto old = groups_.find(g.key); old != groups_.end() && old->second == e.group) {
      groups_.erase(old);
    }
    g.key = GroupKey(e.proto.target(), request, e.proto.delivery(), e.capture, e.how.ptrace,
                     e.how.slot);
    groups_.emplace(g.key, e.group);
  }
  v1::Reservation& p = e.proto;
  *p.mutable_watch() = request;
  p.set_weight(weight);
  p.set_slot_type(ToProto(type));
  SetRegisters(watch.cover, p.mutable_registers());
  if (e.how.ptrace && e.target.kind == TargetSpec::Kind::kThread && !g.arms.empty()) {
    const std::vector<unsigned>& slots = g.arms.front().slots;
    for (int i = 0; i < p.registers_size() && i < static_cast<int>(slots.size()); ++i) {
      p.mutable_registers(i)->set_slot(slots[static_cast<size_t>(i)]);
    }
  }
  if (e.how.traced() && g.followed_tgid != 0 && !g.arms.empty()) {
    // What the tracer arms on threads to come.
    TraceUse use = UseFor(g.id, watch, e.capture, e.how);
    use.slots = g.arms.front().slots;
    tracer_.Unfollow(g.followed_tgid, g.id);
    tracer_.Follow(g.followed_tgid, use);
  }
  return p;
}

Reply<bool> ReservationManager::Release(const Peer& caller, uint64_t id) {
  std::unique_ptr<Entry> e;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    // Another user's reservation is as good as absent to this caller.
    if (it == entries_.end() || (caller.creds.uid != 0 && it->second->uid != caller.creds.uid)) {
      ++refusals_;
      return Refused{{Code::kNotFound, "you hold no reservation " + std::to_string(id)}, {}};
    }
    e = std::move(it->second);
    entries_.erase(it);
    Disarm(*e, "released");
  }
  return true;
}

std::vector<v1::Reservation> ReservationManager::List(const Peer& caller, bool all) const {
  std::vector<v1::Reservation> out;
  std::lock_guard lock(mu_);
  for (const auto& [id, e] : entries_) {
    if (e->uid != caller.creds.uid && !(all && caller.creds.uid == 0)) continue;
    v1::Reservation r = e->proto;
    uint64_t hits = 0;
    for (const Arm& arm : e->group->arms) {
      for (const auto& ev : arm.events) {
        if (auto n = ev.ReadCount()) hits += *n;
      }
      for (const auto& se : arm.sampled) {
        if (auto n = se->event.ReadCount()) hits += *n;
      }
    }
    r.set_hits(hits);
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

v1::SlotsResponse ReservationManager::Slots(const v1::SlotsRequest& req) {
  v1::SlotsResponse out;
  engine::Snapshot s = engine_.TakeSnapshot();
  for (const auto& c : s.cpus) {
    // A mixed pool is reported once, as data (the types it serves are in
    // GetCapabilities); separate pools each under their own type.
    v1::CpuSlots* v = out.add_cpus();
    v->set_cpu(c.cpu);
    v->set_slot_type(ToProto(c.types.size() > 1 ? arch::SlotType::kData : c.types.at(0)));
    v->set_slots(c.slots);
    v->set_cpu_pinned(c.cpu_pinned);
    v->set_max_task_pinned(c.max_task_pinned);
    for (unsigned n : c.tasks_by_slots) v->add_tasks_by_slots(n);
    v->set_free(c.free);
  }
  for (const auto& t : s.tasks) {
    v1::TaskSlots* v = out.add_tasks();
    v->set_tid(t.tid);
    const auto& types = engine_.config().pools[t.pool].types;
    v->set_slot_type(ToProto(types.size() > 1 ? arch::SlotType::kData : types.at(0)));
    v->set_all_cpus(t.all_cpus);
    for (const auto& [cpu, n] : t.per_cpu) (*v->mutable_per_cpu())[cpu] = n;
  }
  if (req.has_probe_target() || req.has_probe_watch()) {
    v1::Admission* a = out.mutable_probe();
    auto target = CheckTarget(req.probe_target(), caps_.cpus);
    auto watch = target ? CheckWatch(req.probe_watch(), *target, caps_)
                        : Outcome<WatchSpec>(target.problem());
    if (!target || !watch) {
      const Problem& p = target ? watch.problem() : target.problem();
      a->set_fits(false);
      a->mutable_refusal()->set_reason(p.code == Code::kResourceExhausted
                                           ? v1::Refusal::REGION_TOO_LARGE
                                           : v1::Refusal::REASON_UNSPECIFIED);
      a->mutable_refusal()->set_explanation(p.message);
      return out;
    }
    a->set_weight(watch->weight());
    SetRegisters(watch->cover, a->mutable_registers());
    const arch::SlotType type = arch::SlotTypeOf(watch->region.access);
    auto no = engine_.Probe({ToEngine(*target), type, watch->weight()});
    a->set_fits(!no.has_value());
    if (no) *a->mutable_refusal() = FromEngine(*no);
  }
  return out;
}

Reply<v1::Reservation> ReservationManager::Reclaim(const Peer& caller, uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  // Only the same uid takes a lease back (root: any); others see nothing.
  if (it == entries_.end() || (caller.creds.uid != 0 && it->second->uid != caller.creds.uid)) {
    ++refusals_;
    return Refused{{Code::kNotFound, "you hold no reservation " + std::to_string(id)}, {}};
  }
  Entry& e = *it->second;
  if (ended_sessions_.count(caller.session_id) != 0) {
    ++refusals_;
    return Refused{{Code::kFailedPrecondition, "this session has ended"}, {}};
  }
  if (!e.orphaned_until) {
    ++refusals_;
    return Refused{{Code::kFailedPrecondition, "reservation " + std::to_string(id) +
                                                   " is held by a live session, not orphaned"},
                   {}};
  }
  e.orphaned_until.reset();
  e.session = caller.session_id;
  e.proto.set_orphaned(false);
  v1::Owner* o = e.proto.mutable_owner();
  o->set_pid(caller.creds.pid);
  o->set_session_id(caller.session_id);
  events_.SetOwner(id, caller.session_id);
  return e.proto;
}

void ReservationManager::SessionEnded(uint64_t session_id) {
  {
    std::lock_guard lock(creds_mu_);
    session_creds_.erase(session_id);
  }
  std::lock_guard lock(mu_);
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
      Disarm(*it->second, "session closed");
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReservationManager::Reap() {
  std::vector<std::pair<uint64_t, pid_t>> gone;    // (group id, thread)
  std::vector<std::pair<uint64_t, pid_t>> execed;  // (group id, process)
  {
    std::lock_guard lock(gone_mu_);
    gone.swap(gone_);
    execed.swap(execed_);
  }
  std::lock_guard lock(mu_);
  for (auto [gid, tgid] : execed) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second->group->id != gid) {
        ++it;
        continue;
      }
      v1::Event ev;
      *ev.mutable_time() = Now();
      ev.mutable_execed()->set_reservation_id(it->first);
      ev.mutable_execed()->set_pid(tgid);
      events_.Publish(it->first, ev, true);
      Disarm(*it->second, "target exec'd");
      it = entries_.erase(it);
    }
    ForgetPtraceThread(tgid);  // exec flushed its registers
  }
  for (const auto& [gid, tid] : gone) ForgetPtraceThread(tid);
  {
    // Threads the tracer let go of still hold registered slots until they
    // end: looked up in /proc.
    std::vector<pid_t> ended;
    {
      std::lock_guard plock(ptrace_mu_);
      for (const auto& [key, bank] : ptrace_banks_) {
        if (std::none_of(bank.in_use.begin(), bank.in_use.end(), [](bool b) { return b; }) &&
            !ThreadAlive(key.first)) {
          ended.push_back(key.first);
        }
      }
    }
    for (pid_t tid : ended) ForgetPtraceThread(tid);
  }
  // Threads whose end nothing reports (counting events, a debugger's
  // stops): looked up in /proc.
  for (auto& [id, e] : entries_) {
    if (e->target.kind == TargetSpec::Kind::kCpu || e->target.kind == TargetSpec::Kind::kProcess) {
      continue;
    }
    for (const Arm& arm : e->group->arms) {
      if (arm.sampled.empty() && arm.traced_group == 0 && !ThreadAlive(arm.tid)) {
        gone.emplace_back(e->group->id, arm.tid);
      }
    }
  }
  for (auto [gid, tid] : gone) {
    for (auto& [id, e] : entries_) {
      if (e->group->id != gid) continue;
      if (e->target.kind == TargetSpec::Kind::kProcess) {
        DropThread(*e->group, tid);  // released below when none is left
      } else {
        for (Arm& arm : e->group->arms) DisarmOne(arm);
        e->group->arms.clear();  // the thread is gone: every sharer is released below
      }
      break;
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
    if (e.target.kind == TargetSpec::Kind::kProcess &&
        std::find(followed.begin(), followed.end(), &g) == followed.end()) {
      FollowThreads(e, g);
      followed.push_back(&g);
    }
    if (g.arms.empty()) {
      Disarm(e, "target exited");
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
    if (a->tid != tid) continue;
    DisarmOne(*a);
    g.arms.erase(a);
    v1::Event ev;
    *ev.mutable_time() = Now();
    ev.mutable_exited()->set_reservation_id(g.id);
    ev.mutable_exited()->set_tid(tid);
    events_.PublishGroup(g.id, ev, true);
    return;
  }
}

void ReservationManager::FollowThreads(const Entry& e, Group& g) {
  const std::vector<pid_t> now = ListThreads(e.target.tid);
  std::vector<pid_t> gone;
  for (const Arm& a : g.arms) {
    if (!std::binary_search(now.begin(), now.end(), a.tid)) gone.push_back(a.tid);
  }
  for (pid_t tid : gone) DropThread(g, tid);
  if (now.empty()) return;  // the process is gone
  WatchSpec watch{e.region, arch::CoverMode::kExact, e.cover};
  for (pid_t tid : now) {
    bool known = false;
    for (const Arm& a : g.arms) known = known || a.tid == tid;
    if (known) continue;
    auto arm = ArmThread({TargetSpec::Kind::kThread, tid, 0}, watch, e.type, e.options, g.id,
                         e.capture, e.how);
    if (auto* refused = std::get_if<Refused>(&arm)) {
      // The tracer may have armed it when it started: not accounted, so not kept.
      if (e.how.traced()) tracer_.Remove(tid, g.id);
      // The thread runs unwatched; say so rather than hide it.
      spdlog::warn("reservation {}: new thread {} of process {} not watched: {}", g.id, tid,
                   e.target.tid, refused->problem.message);
      ++refusals_;
      continue;
    }
    g.arms.push_back(std::get<Arm>(std::move(arm)));
    v1::Event ev;
    *ev.mutable_time() = Now();
    ev.mutable_thread_added()->set_reservation_id(g.id);
    ev.mutable_thread_added()->set_pid(e.target.tid);
    ev.mutable_thread_added()->set_tid(tid);
    events_.PublishGroup(g.id, ev, true);
  }
}

Reply<std::shared_ptr<EventStream>> ReservationManager::Follow(const Peer& caller,
                                                               const v1::StreamEventsRequest& req,
                                                               EventStream::Notify notify) {
  std::vector<uint64_t> ids(req.reservation_ids().begin(), req.reservation_ids().end());
  {
    std::lock_guard lock(mu_);
    for (uint64_t id : ids) {
      auto it = entries_.find(id);
      if (it == entries_.end() || (caller.creds.uid != 0 && it->second->uid != caller.creds.uid)) {
        ++refusals_;
        return Refused{{Code::kNotFound, "you hold no reservation " + std::to_string(id)}, {}};
      }
    }
  }
  return events_.Subscribe(caller.session_id, std::move(ids), req.lifecycle(), std::move(notify));
}

uint64_t ReservationManager::active() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

uint64_t ReservationManager::refusals() const {
  std::lock_guard lock(mu_);
  return refusals_;
}

}  // namespace hwwatch::daemon
