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

// A server-streaming call finished at once (a refused StreamEvents).
class FinishedWriter final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// One StreamEvents call: writes the events of its stream one at a time,
// as they come. The hub never waits for it; a slow reader loses events
// (counted, reported in-band) instead of holding anything up.
class EventWriter final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  explicit EventWriter(ReservationManager& manager) : manager_(manager) {}

  // Second phase of construction: the stream's notify callback needs `this`.
  // The initial metadata tells the client the subscription is in place
  // (client::Client::Follow waits for it); events follow it.
  void Attach(std::shared_ptr<EventStream> stream) {
    std::lock_guard lock(mu_);
    stream_ = std::move(stream);
    metadata_pending_ = true;
    StartSendInitialMetadata();
  }

  void OnSendInitialMetadataDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      metadata_pending_ = false;
      if (!ok) {
        FinishOnce(grpc::Status::CANCELLED);
        return;
      }
    }
    TryWrite();
  }

  // From a producer's thread (the hub's notify) or gRPC's.
  void TryWrite() {
    std::lock_guard lock(mu_);
    if (writing_ || finished_ || metadata_pending_ || !stream_) return;
    auto e = stream_->Pop();
    if (!e) return;
    current_ = std::move(*e);
    writing_ = true;
    StartWrite(&current_);
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) {  // the client went away mid-write
        FinishOnce(grpc::Status::CANCELLED);
        return;
      }
    }
    TryWrite();
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishOnce(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    std::shared_ptr<EventStream> s;
    {
      std::lock_guard lock(mu_);
      s = std::move(stream_);
    }
    if (s) manager_.Unfollow(s);  // no notify after this returns
    delete this;
  }

 private:
  // Needs mu_.
  void FinishOnce(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  ReservationManager& manager_;
  std::mutex mu_;  // guards the members below
  std::shared_ptr<EventStream> stream_;
  v1::Event current_;
  bool writing_ = false;
  bool metadata_pending_ = false;
  bool finished_ = false;
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

namespace {
grpc::StatusCode ToGrpc(Code c);
grpc::Status ToStatus(const Refused& r);
}  // namespace

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

WatchpointService::WatchpointService(v1::Capabilities caps, const PeerRegistry& peers,
                                     ReservationManager& reservations)
    : caps_(std::move(caps)), peers_(peers), reservations_(reservations) {}

namespace {
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

grpc::Status ToStatus(const Refused& r) {
  const grpc::StatusCode code = ToGrpc(r.problem.code);
  if (!r.refusal) return grpc::Status(code, r.problem.message);
  v1::ErrorDetails details;
  details.set_code(static_cast<int>(code));
  details.set_message(r.problem.message);
  details.add_details()->PackFrom(*r.refusal);
  return grpc::Status(code, r.problem.message, details.SerializeAsString());
}
}  // namespace

std::optional<Peer> WatchpointService::Caller(grpc::CallbackServerContext* ctx,
                                              grpc::Status* status) const {
  auto peer = peers_.Lookup(ctx->peer());
  if (!peer) {
    *status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                           "hwwatchd cannot identify the connection of this call (" + ctx->peer() +
                               "); connect through its Unix socket");
  }
  return peer;
}

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
                                                     const v1::ReserveRequest* req,
                                                     v1::ReserveResponse* resp) {
  Count(kReserve);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  auto r = reservations_.Reserve(*caller, *req);
  if (auto* refused = std::get_if<Refused>(&r)) return Answer(ctx, ToStatus(*refused));
  *resp->mutable_reservation() = std::get<v1::Reservation>(std::move(r));
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Modify(grpc::CallbackServerContext* ctx,
                                                    const v1::ModifyRequest* req,
                                                    v1::ModifyResponse* resp) {
  Count(kModify);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  auto r = reservations_.Modify(*caller, *req);
  if (auto* refused = std::get_if<Refused>(&r)) return Answer(ctx, ToStatus(*refused));
  *resp->mutable_reservation() = std::get<v1::Reservation>(std::move(r));
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Release(grpc::CallbackServerContext* ctx,
                                                     const v1::ReleaseRequest* req,
                                                     v1::ReleaseResponse*) {
  Count(kRelease);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  auto r = reservations_.Release(*caller, req->id());
  if (auto* refused = std::get_if<Refused>(&r)) return Answer(ctx, ToStatus(*refused));
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::List(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRequest* req,
                                                  v1::ListResponse* resp) {
  Count(kList);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  for (auto& r : reservations_.List(*caller, req->all())) *resp->add_reservations() = std::move(r);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Slots(grpc::CallbackServerContext* ctx,
                                                   const v1::SlotsRequest* req,
                                                   v1::SlotsResponse* resp) {
  Count(kSlots);
  grpc::Status status;
  if (!Caller(ctx, &status)) return Answer(ctx, status);
  *resp = reservations_.Slots(*req);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerWriteReactor<v1::Event>* WatchpointService::StreamEvents(
    grpc::CallbackServerContext* ctx, const v1::StreamEventsRequest* req) {
  Count(kStreamEvents);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return new FinishedWriter(status);
  auto* writer = new EventWriter(reservations_);
  auto stream = reservations_.Follow(*caller, *req, [writer] { writer->TryWrite(); });
  if (auto* refused = std::get_if<Refused>(&stream)) {
    auto* refusal = new FinishedWriter(ToStatus(*refused));
    delete writer;
    return refusal;
  }
  writer->Attach(std::get<std::shared_ptr<EventStream>>(std::move(stream)));
  return writer;
}

grpc::ServerUnaryReactor* WatchpointService::Stats(grpc::CallbackServerContext* ctx,
                                                   const v1::StatsRequest*,
                                                   v1::StatsResponse* resp) {
  Count(kStats);
  grpc::Status status;
  auto peer = Caller(ctx, &status);
  if (!peer) return Answer(ctx, status);
  resp->set_reservations_active(reservations_.active());
  resp->set_refusals(reservations_.refusals());
  resp->set_events_sent(reservations_.events_sent());
  resp->set_events_lost(reservations_.events_lost());
  resp->set_lock_mode(std::string(engine::LockModeName(reservations_.lock_mode())));
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
