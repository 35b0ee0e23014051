#include "daemon/convert.h"

#include <algorithm>

namespace hwwatch::daemon {

namespace {

std::optional<arch::Access> FromProto(v1::Access a) {
  switch (a) {
    case v1::ACCESS_WRITE:
      return arch::Access::kWrite;
    case v1::ACCESS_READ_WRITE:
      return arch::Access::kReadWrite;
    case v1::ACCESS_EXECUTE:
      return arch::Access::kExecute;
    case v1::ACCESS_READ:
      return arch::Access::kRead;
    default:
      return std::nullopt;
  }
}

v1::Access ToProto(arch::Access a) {
  switch (a) {
    case arch::Access::kWrite:
      return v1::ACCESS_WRITE;
    case arch::Access::kReadWrite:
      return v1::ACCESS_READ_WRITE;
    case arch::Access::kExecute:
      return v1::ACCESS_EXECUTE;
    case arch::Access::kRead:
      return v1::ACCESS_READ;
  }
  return v1::ACCESS_UNSPECIFIED;
}

v1::Arch ToProto(arch::Arch a) {
  switch (a) {
    case arch::Arch::kX86_64:
      return v1::ARCH_X86_64;
    case arch::Arch::kAarch64:
      return v1::ARCH_AARCH64;
    case arch::Arch::kUnknown:
      break;
  }
  return v1::ARCH_UNSPECIFIED;
}

v1::Delivery ToProto(Delivery d) {
  switch (d) {
    case Delivery::kSamples:
      return v1::DELIVERY_SAMPLES;
    case Delivery::kStop:
      return v1::DELIVERY_STOP;
    case Delivery::kCount:
      return v1::DELIVERY_COUNT;
    case Delivery::kDefault:
      break;
  }
  return v1::DELIVERY_DEFAULT;
}

google::protobuf::Timestamp ToProto(const timespec& t) {
  google::protobuf::Timestamp out;
  out.set_seconds(t.tv_sec);
  out.set_nanos(static_cast<int32_t>(t.tv_nsec));
  return out;
}

void SetRegisters(const std::vector<RegisterInfo>& regs,
                  google::protobuf::RepeatedPtrField<v1::Register>* out) {
  for (const RegisterInfo& reg : regs) {
    v1::Register* r = out->Add();
    r->set_address(reg.address);
    r->set_length(reg.length);
    if (reg.slot) r->set_slot(*reg.slot);
  }
}

}  // namespace

TargetSpec FromProto(const v1::Target& t) {
  switch (t.kind_case()) {
    case v1::Target::kTid:
      return {TargetSpec::Kind::kThread, t.tid(), 0};
    case v1::Target::kPid:
      return {TargetSpec::Kind::kProcess, t.pid(), 0};
    case v1::Target::kCpu:
      return {TargetSpec::Kind::kCpu, 0, t.cpu()};
    case v1::Target::kThreadOnCpu:
      return {TargetSpec::Kind::kThreadOnCpu, t.thread_on_cpu().tid(), t.thread_on_cpu().cpu()};
    case v1::Target::KIND_NOT_SET:
      break;
  }
  return {TargetSpec::Kind::kNone, 0, 0};
}

WatchRequest FromProto(const v1::Watch& w) {
  return WatchRequest{w.address(), w.length(),  FromProto(w.access()), w.over_cover(),
                      w.symbol(),  w.changed(), w.condition()};
}

Result<ReserveArgs> FromProto(const v1::ReserveRequest& r) {
  ReserveArgs out;
  if (r.has_reclaim()) {
    out.reclaim = r.reclaim();
    return out;
  }
  switch (r.backend()) {
    case v1::BACKEND_AUTO:
      out.backend = BackendChoice::kAuto;
      break;
    case v1::BACKEND_PERF:
      out.backend = BackendChoice::kPerf;
      break;
    case v1::BACKEND_PTRACE:
      out.backend = BackendChoice::kPtrace;
      break;
    default:
      return Invalid("unknown backend " + std::to_string(r.backend()));
  }
  switch (r.delivery()) {
    case v1::DELIVERY_DEFAULT:
      out.delivery = Delivery::kDefault;
      break;
    case v1::DELIVERY_SAMPLES:
      out.delivery = Delivery::kSamples;
      break;
    case v1::DELIVERY_STOP:
      out.delivery = Delivery::kStop;
      break;
    case v1::DELIVERY_COUNT:
      out.delivery = Delivery::kCount;
      break;
    default:
      return Invalid("unknown delivery " + std::to_string(r.delivery()));
  }
  out.target = FromProto(r.target());
  out.watch = FromProto(r.watch());
  if (r.has_slot()) out.slot = r.slot();
  out.lease = Lease{r.lease().seconds(), r.lease().nanos()};
  out.label = r.label();
  out.capture_value = r.capture_value();
  return out;
}

SlotsArgs FromProto(const v1::SlotsRequest& r) {
  SlotsArgs out;
  out.probe = r.has_probe_target() || r.has_probe_watch();
  out.target = FromProto(r.probe_target());
  out.watch = FromProto(r.probe_watch());
  return out;
}

v1::SlotType ToProto(arch::SlotType t) {
  return t == arch::SlotType::kInst ? v1::SLOT_TYPE_INST : v1::SLOT_TYPE_DATA;
}

v1::Target ToProto(const TargetSpec& t) {
  v1::Target out;
  switch (t.kind) {
    case TargetSpec::Kind::kThread:
      out.set_tid(t.tid);
      break;
    case TargetSpec::Kind::kProcess:
      out.set_pid(t.tid);
      break;
    case TargetSpec::Kind::kCpu:
      out.set_cpu(t.cpu);
      break;
    case TargetSpec::Kind::kThreadOnCpu:
      out.mutable_thread_on_cpu()->set_tid(t.tid);
      out.mutable_thread_on_cpu()->set_cpu(t.cpu);
      break;
    case TargetSpec::Kind::kNone:
      break;
  }
  return out;
}

v1::Watch ToProto(const WatchRequest& w) {
  v1::Watch out;
  out.set_address(w.address);
  out.set_length(w.length);
  out.set_access(w.access ? ToProto(*w.access) : v1::ACCESS_UNSPECIFIED);
  out.set_over_cover(w.over_cover);
  out.set_symbol(w.symbol);
  out.set_changed(w.changed);
  out.set_condition(w.condition);
  return out;
}

v1::Reservation ToProto(const ReservationInfo& r) {
  v1::Reservation p;
  p.set_id(r.id);
  *p.mutable_target() = ToProto(r.target);
  *p.mutable_watch() = ToProto(r.watch);
  p.set_backend(r.backend == BackendChoice::kPtrace ? v1::BACKEND_PTRACE : v1::BACKEND_PERF);
  p.set_delivery(ToProto(r.delivery));
  p.set_slot_type(ToProto(r.slot_type));
  p.set_weight(r.weight);
  SetRegisters(r.registers, p.mutable_registers());
  v1::Owner* o = p.mutable_owner();
  o->set_uid(r.owner.uid);
  o->set_gid(r.owner.gid);
  o->set_pid(r.owner.pid);
  o->set_session_id(r.owner.session_id);
  *p.mutable_created() = ToProto(r.created);
  p.mutable_lease()->set_seconds(r.lease.seconds);
  p.mutable_lease()->set_nanos(r.lease.nanos);
  p.set_label(r.label);
  p.set_sharers(r.sharers);
  p.set_hits(r.hits);
  p.set_delivered(r.delivered);
  p.set_filtered(r.filtered);
  p.set_lost(r.lost);
  p.set_orphaned(r.orphaned);
  return p;
}

v1::Refusal ToProto(const Refusal& r) {
  v1::Refusal out;
  switch (r.reason) {
    case Refusal::Reason::kUnspecified:
      out.set_reason(v1::Refusal::REASON_UNSPECIFIED);
      break;
    case Refusal::Reason::kCpuFull:
      out.set_reason(v1::Refusal::CPU_FULL);
      break;
    case Refusal::Reason::kTaskFull:
      out.set_reason(v1::Refusal::TASK_FULL);
      break;
    case Refusal::Reason::kQuotaExceeded:
      out.set_reason(v1::Refusal::QUOTA_EXCEEDED);
      break;
    case Refusal::Reason::kHeldOutside:
      out.set_reason(v1::Refusal::HELD_OUTSIDE);
      break;
    case Refusal::Reason::kRegionTooLarge:
      out.set_reason(v1::Refusal::REGION_TOO_LARGE);
      break;
    case Refusal::Reason::kNotPermitted:
      out.set_reason(v1::Refusal::NOT_PERMITTED);
      break;
  }
  if (r.slot_type) out.set_slot_type(ToProto(*r.slot_type));
  if (r.cpu) out.set_cpu(*r.cpu);
  if (r.tid) out.set_tid(*r.tid);
  out.set_slots(r.slots);
  out.set_cpu_pinned(r.cpu_pinned);
  out.set_task_pinned(r.task_pinned);
  out.set_weight(r.weight);
  out.set_quota(r.quota);
  out.set_held(r.held);
  if (r.held_outside) out.set_held_outside(*r.held_outside);
  out.set_explanation(r.explanation);
  return out;
}

v1::SlotsResponse ToProto(const SlotsView& s) {
  v1::SlotsResponse out;
  for (const auto& c : s.cpus) {
    v1::CpuSlots* v = out.add_cpus();
    v->set_cpu(c.cpu);
    v->set_slot_type(ToProto(c.slot_type));
    v->set_slots(c.slots);
    v->set_cpu_pinned(c.cpu_pinned);
    v->set_max_task_pinned(c.max_task_pinned);
    for (unsigned n : c.tasks_by_slots) v->add_tasks_by_slots(n);
    v->set_free(c.free);
  }
  for (const auto& t : s.tasks) {
    v1::TaskSlots* v = out.add_tasks();
    v->set_tid(t.tid);
    v->set_slot_type(ToProto(t.slot_type));
    v->set_all_cpus(t.all_cpus);
    for (const auto& [cpu, n] : t.per_cpu) (*v->mutable_per_cpu())[cpu] = n;
    if (t.held_outside) v->set_held_outside(*t.held_outside);
  }
  if (s.probe) {
    v1::Admission* a = out.mutable_probe();
    a->set_fits(s.probe->fits);
    a->set_weight(s.probe->weight);
    SetRegisters(s.probe->registers, a->mutable_registers());
    if (s.probe->refusal) *a->mutable_refusal() = ToProto(*s.probe->refusal);
    if (s.probe->held_outside) a->set_held_outside(*s.probe->held_outside);
  }
  return out;
}

v1::Event ToProto(const Event& e) {
  v1::Event out;
  out.set_sequence(e.sequence);
  *out.mutable_time() = ToProto(e.time);
  struct Visit {
    v1::Event& out;
    void operator()(const Event::Hit& h) {
      v1::Hit* p = out.mutable_hit();
      p->set_reservation_id(h.reservation_id);
      p->set_tid(h.tid);
      p->set_ip(h.ip);
      p->set_address(h.address);
      if (h.slot) p->set_slot(*h.slot);
      if (h.value) p->set_value(*h.value);
      if (h.old_value) p->set_old_value(*h.old_value);
      if (h.value) p->set_value_source(h.value_at_trap ? v1::VALUE_AT_TRAP : v1::VALUE_AT_DELIVERY);
      if (h.cpu) p->set_cpu(*h.cpu);
    }
    void operator()(const Event::ThreadAdded& t) {
      out.mutable_thread_added()->set_reservation_id(t.reservation_id);
      out.mutable_thread_added()->set_pid(t.pid);
      out.mutable_thread_added()->set_tid(t.tid);
    }
    void operator()(const Event::Execed& x) {
      out.mutable_execed()->set_reservation_id(x.reservation_id);
      out.mutable_execed()->set_pid(x.pid);
    }
    void operator()(const Event::Exited& x) {
      out.mutable_exited()->set_reservation_id(x.reservation_id);
      out.mutable_exited()->set_tid(x.tid);
    }
    void operator()(const Event::Lost& l) { out.mutable_lost()->set_count(l.count); }
    void operator()(const Event::Released& r) {
      out.mutable_released()->set_reservation_id(r.reservation_id);
      out.mutable_released()->set_why(r.why);
      out.mutable_released()->set_hits(r.hits);
      out.mutable_released()->set_delivered(r.delivered);
      out.mutable_released()->set_filtered(r.filtered);
      out.mutable_released()->set_lost(r.lost);
    }
  };
  std::visit(Visit{out}, e.kind);
  return out;
}

grpc::StatusCode ToGrpc(Code c) {
  switch (c) {
    case Code::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Code::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Code::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case Code::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case Code::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case Code::kUnimplemented:
      return grpc::StatusCode::UNIMPLEMENTED;
    case Code::kInternal:
      break;
  }
  return grpc::StatusCode::INTERNAL;
}

grpc::Status ToStatus(const Problem& p) {
  const grpc::StatusCode code = ToGrpc(p.code);
  if (!p.refusal) return grpc::Status(code, p.message);
  v1::ErrorDetails details;
  details.set_code(static_cast<int>(code));
  details.set_message(p.message);
  details.add_details()->PackFrom(ToProto(*p.refusal));
  return grpc::Status(code, p.message, details.SerializeAsString());
}

v1::Capabilities CapabilitiesToProto(const arch::HostCapabilities& caps) {
  v1::Capabilities out;
  out.set_arch(ToProto(caps.arch));
  out.set_kernel_release(caps.kernel_release);
  out.set_cpus(caps.cpus);
  out.set_debug_arch(caps.debug_arch);
  out.set_daemon_version(HWWATCH_VERSION);
  uint64_t max_register = 0;
  uint32_t max_slots = 0;
  for (const arch::SlotPool& p : caps.pools) {
    v1::SlotPool* pool = out.add_pools();
    for (arch::SlotType t : p.types) pool->add_types(ToProto(t));
    pool->set_slots(p.slots);
    pool->set_mixed(p.mixed());
    max_slots = std::max(max_slots, p.slots);
  }
  for (const arch::AccessRule& r : caps.rules) {
    v1::AccessRule* rule = out.add_access_rules();
    rule->set_access(ToProto(r.access));
    for (unsigned len : r.lengths) {
      rule->add_lengths(len);
      if (r.access != arch::Access::kExecute) max_register = std::max<uint64_t>(max_register, len);
    }
    rule->set_naturally_aligned(r.naturally_aligned);
    rule->set_word_size(r.word_size);
    if (r.access != arch::Access::kExecute) {
      max_register = std::max<uint64_t>(max_register, r.word_size);
    }
  }
  // A region is split over at most every register of the pool.
  out.set_max_watch_length(max_register * max_slots);
  return out;
}

v1::Backend BackendToProto(arch::Backend b) {
  return b == arch::Backend::kPtrace ? v1::BACKEND_PTRACE : v1::BACKEND_PERF;
}

v1::SelfTestResult SelfTestToProto(const arch::SelfTestResult& r) {
  v1::SelfTestResult out;
  out.set_backend(BackendToProto(r.backend));
  switch (r.outcome) {
    case arch::SelfTestOutcome::kFires:
      out.set_outcome(v1::SelfTestResult::FIRES);
      break;
    case arch::SelfTestOutcome::kNeverFires:
      out.set_outcome(v1::SelfTestResult::NEVER_FIRES);
      break;
    case arch::SelfTestOutcome::kUnavailable:
      out.set_outcome(v1::SelfTestResult::UNAVAILABLE);
      break;
  }
  out.set_detail(r.detail);
  return out;
}

}  // namespace hwwatch::daemon
