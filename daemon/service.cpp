#include "daemon/service.h"

#include <google/protobuf/util/time_util.h>

#include "daemon/convert.h"

#include <algorithm>

namespace hwwatch::daemon {

using google::protobuf::util::TimeUtil;

namespace {

// A server-streaming call finished at once (a refused StreamEvents).
template <typename Message>
class FinishedWriter final : public grpc::ServerWriteReactor<Message> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// What one write of a stream carries: one event (StreamEvents), or every
// event waiting, up to kMaxBatch (StreamEventBatches).
constexpr size_t kMaxBatch = 1024;
bool NextMessage(EventStream& s, v1::Event& out) {
  auto e = s.Pop();
  if (!e) return false;
  out = ToProto(*e);
  return true;
}
bool NextMessage(EventStream& s, v1::EventBatch& out) {
  std::vector<Event> events = s.PopBatch(kMaxBatch);
  if (events.empty()) return false;
  out.Clear();
  out.mutable_events()->Reserve(static_cast<int>(events.size()));
  for (const Event& e : events) *out.add_events() = ToProto(e);
  return true;
}

// One StreamEvents (or StreamEventBatches) call: writes the events of its
// stream as they come, one write at a time. The hub never waits for it; a
// slow reader loses events (counted, reported in-band) instead of holding
// anything up.
template <typename Message>
class EventWriter final : public grpc::ServerWriteReactor<Message> {
 public:
  explicit EventWriter(ReservationManager& manager) : manager_(manager) {}

  // Second phase of construction: the stream's notify callback needs `this`.
  // The initial metadata tells the client the subscription is in place
  // (client::Client::Follow waits for it); events follow it.
  void Attach(std::shared_ptr<EventStream> stream) {
    std::lock_guard lock(mu_);
    stream_ = std::move(stream);
    metadata_pending_ = true;
    this->StartSendInitialMetadata();
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
    if (!NextMessage(*stream_, current_)) return;
    writing_ = true;
    this->StartWrite(&current_);
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
    this->Finish(status);
  }

  ReservationManager& manager_;
  std::mutex mu_;  // guards the members below
  std::shared_ptr<EventStream> stream_;
  Message current_;
  bool writing_ = false;
  bool metadata_pending_ = false;
  bool finished_ = false;
};

}  // namespace

WatchpointService::WatchpointService(v1::Capabilities caps, const PeerRegistry& peers,
                                     ReservationManager& reservations)
    : caps_(std::move(caps)), peers_(peers), reservations_(reservations) {}

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
      "GetCapabilities",    "Reserve", "Modify", "Release", "List", "Slots", "StreamEvents",
      "StreamEventBatches", "Stats"};
  return kNames[m];
}

grpc::ServerUnaryReactor* WatchpointService::Answer(grpc::CallbackServerContext* ctx,
                                                    const grpc::Status& status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(status);
  return r;
}

grpc::ServerUnaryReactor* WatchpointService::Refuse(grpc::CallbackServerContext* ctx,
                                                    const Problem& p) {
  refusals_.fetch_add(1, std::memory_order_relaxed);
  return Answer(ctx, ToStatus(p));
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
  auto args = FromProto(*req);
  if (!args) return Refuse(ctx, args.error());
  auto r = reservations_.Reserve(*caller, *args);
  if (!r) return Refuse(ctx, r.error());
  *resp->mutable_reservation() = ToProto(*r);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Modify(grpc::CallbackServerContext* ctx,
                                                    const v1::ModifyRequest* req,
                                                    v1::ModifyResponse* resp) {
  Count(kModify);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  auto r = reservations_.Modify(*caller, req->id(), FromProto(req->watch()));
  if (!r) return Refuse(ctx, r.error());
  *resp->mutable_reservation() = ToProto(*r);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Release(grpc::CallbackServerContext* ctx,
                                                     const v1::ReleaseRequest* req,
                                                     v1::ReleaseResponse*) {
  Count(kRelease);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  if (auto no = reservations_.Release(*caller, req->id())) return Refuse(ctx, *no);
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::List(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRequest* req,
                                                  v1::ListResponse* resp) {
  Count(kList);
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return Answer(ctx, status);
  for (const auto& r : reservations_.List(*caller, req->all())) {
    *resp->add_reservations() = ToProto(r);
  }
  return Answer(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* WatchpointService::Slots(grpc::CallbackServerContext* ctx,
                                                   const v1::SlotsRequest* req,
                                                   v1::SlotsResponse* resp) {
  Count(kSlots);
  grpc::Status status;
  if (!Caller(ctx, &status)) return Answer(ctx, status);
  *resp = ToProto(reservations_.Slots(FromProto(*req)));
  return Answer(ctx, grpc::Status::OK);
}

template <typename Message>
grpc::ServerWriteReactor<Message>* WatchpointService::OpenStream(grpc::CallbackServerContext* ctx,
                                                                 const v1::StreamEventsRequest* req,
                                                                 size_t capacity) {
  grpc::Status status;
  auto caller = Caller(ctx, &status);
  if (!caller) return new FinishedWriter<Message>(status);
  auto* writer = new EventWriter<Message>(reservations_);
  auto stream = reservations_.Follow(
      *caller, std::vector<uint64_t>(req->reservation_ids().begin(), req->reservation_ids().end()),
      req->lifecycle(), [writer] { writer->TryWrite(); }, capacity);
  if (!stream) {
    delete writer;
    refusals_.fetch_add(1, std::memory_order_relaxed);
    return new FinishedWriter<Message>(ToStatus(stream.error()));
  }
  writer->Attach(std::move(stream).value());
  return writer;
}

grpc::ServerWriteReactor<v1::Event>* WatchpointService::StreamEvents(
    grpc::CallbackServerContext* ctx, const v1::StreamEventsRequest* req) {
  Count(kStreamEvents);
  return OpenStream<v1::Event>(ctx, req, 0);
}

grpc::ServerWriteReactor<v1::EventBatch>* WatchpointService::StreamEventBatches(
    grpc::CallbackServerContext* ctx, const v1::StreamEventsRequest* req) {
  Count(kStreamEventBatches);
  return OpenStream<v1::EventBatch>(ctx, req, EventHub::kBatchedCapacity);
}

grpc::ServerUnaryReactor* WatchpointService::Stats(grpc::CallbackServerContext* ctx,
                                                   const v1::StatsRequest*,
                                                   v1::StatsResponse* resp) {
  Count(kStats);
  grpc::Status status;
  auto peer = Caller(ctx, &status);
  if (!peer) return Answer(ctx, status);
  resp->set_reservations_active(reservations_.active());
  // Refused calls, and threads of watched processes that did not fit.
  resp->set_refusals(refusals_.load(std::memory_order_relaxed) + reservations_.threads_refused());
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
