#include "daemon/service.h"

#include <google/protobuf/util/time_util.h>

#include <algorithm>

namespace hwwatch::daemon {

using google::protobuf::util::TimeUtil;

namespace {

v1::SlotType ToProto(arch::SlotType t) {
  return t == arch::SlotType::kInst ? v1::SLOT_TYPE_INST : v1::SLOT_TYPE_DATA;
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

// A server-streaming call finished at once (for streams not built yet).
class FinishedWriter final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

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

WatchpointService::WatchpointService(v1::Capabilities caps, const PeerRegistry& peers)
    : caps_(std::move(caps)), peers_(peers) {}

const char* WatchpointService::MethodName(Method m) {
  static constexpr const char* kNames[kMethodCount] = {
      "GetCapabilities", "Reserve", "Modify", "Release", "List", "Slots", "StreamEvents", "Stats"};
  return kNames[m];
}

grpc::ServerUnaryReactor* WatchpointService::Answer(grpc::CallbackServerContext* ctx,
                                                    const grpc::Status& status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(status);
  return r;
}

grpc::Status WatchpointService::NotBuilt(const char* what) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string(what) + " is not built yet in this version of hwwatchd");
}

grpc::ServerUnaryReactor* WatchpointService::GetCapabilities(grpc::CallbackServerContext* ctx,
                                                             const v1::GetCapabilitiesRequest*,
                                                             v1::Capabilities* resp) {
  Count(kGetCapabilities);
  *resp = caps_;
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Reserve(grpc::CallbackServerContext* ctx,
                                                     const v1::ReserveRequest*,
                                                     v1::ReserveResponse*) {
  Count(kReserve);
  return Answer(ctx, NotBuilt("Reserve"));
}

grpc::ServerUnaryReactor* WatchpointService::Modify(grpc::CallbackServerContext* ctx,
                                                    const v1::ModifyRequest*, v1::ModifyResponse*) {
  Count(kModify);
  return Answer(ctx, NotBuilt("Modify"));
}

grpc::ServerUnaryReactor* WatchpointService::Release(grpc::CallbackServerContext* ctx,
                                                     const v1::ReleaseRequest*,
                                                     v1::ReleaseResponse*) {
  Count(kRelease);
  return Answer(ctx, NotBuilt("Release"));
}

grpc::ServerUnaryReactor* WatchpointService::List(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRequest*, v1::ListResponse*) {
  Count(kList);
  return Answer(ctx, NotBuilt("List"));
}

grpc::ServerUnaryReactor* WatchpointService::Slots(grpc::CallbackServerContext* ctx,
                                                   const v1::SlotsRequest*, v1::SlotsResponse*) {
  Count(kSlots);
  return Answer(ctx, NotBuilt("Slots"));
}

grpc::ServerWriteReactor<v1::Event>* WatchpointService::StreamEvents(
    grpc::CallbackServerContext*, const v1::StreamEventsRequest*) {
  Count(kStreamEvents);
  return new FinishedWriter(NotBuilt("StreamEvents"));
}

grpc::ServerUnaryReactor* WatchpointService::Stats(grpc::CallbackServerContext* ctx,
                                                   const v1::StatsRequest*,
                                                   v1::StatsResponse* resp) {
  Count(kStats);
  auto peer = peers_.Lookup(ctx->peer());
  if (!peer) {
    return Answer(ctx, grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                    "hwwatchd cannot identify the connection of this call (" +
                                        ctx->peer() + "); connect through its Unix socket"));
  }
  auto up = std::chrono::steady_clock::now() - started_;
  *resp->mutable_uptime() = TimeUtil::NanosecondsToDuration(
      std::chrono::duration_cast<std::chrono::nanoseconds>(up).count());
  resp->set_connections_total(peers_.total());
  resp->set_connections_active(peers_.active());
  for (int m = 0; m < kMethodCount; ++m) {
    (*resp->mutable_calls())[MethodName(static_cast<Method>(m))] =
        calls_[m].load(std::memory_order_relaxed);
  }
  v1::Owner* caller = resp->mutable_caller();
  caller->set_uid(peer->creds.uid);
  caller->set_gid(peer->creds.gid);
  caller->set_pid(peer->creds.pid);
  caller->set_session_id(peer->session_id);
  return Answer(ctx, grpc::Status::OK);
}

}  // namespace hwwatch::daemon
