// The gRPC face of hwwatchd: WatchpointManager on the callback API. The only
// layer that knows gRPC; it identifies each caller through PeerRegistry and
// maps results to gRPC status codes at this edge.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "arch/capabilities.h"
#include "arch/self_test.h"
#include "daemon/convert.h"
#include "daemon/peers.h"
#include "daemon/reservations.h"
#include "hwwatch/v1/hwwatch.grpc.pb.h"

namespace hwwatch::daemon {

namespace v1 = ::hwwatch::v1;

class WatchpointService final : public v1::WatchpointManager::CallbackService {
 public:
  WatchpointService(v1::Capabilities caps, const PeerRegistry& peers,
                    ReservationManager& reservations);

  grpc::ServerUnaryReactor* GetCapabilities(grpc::CallbackServerContext* ctx,
                                            const v1::GetCapabilitiesRequest* req,
                                            v1::Capabilities* resp) override;
  grpc::ServerUnaryReactor* Reserve(grpc::CallbackServerContext* ctx, const v1::ReserveRequest* req,
                                    v1::ReserveResponse* resp) override;
  grpc::ServerUnaryReactor* Modify(grpc::CallbackServerContext* ctx, const v1::ModifyRequest* req,
                                   v1::ModifyResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx, const v1::ReleaseRequest* req,
                                    v1::ReleaseResponse* resp) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const v1::ListRequest* req,
                                 v1::ListResponse* resp) override;
  grpc::ServerUnaryReactor* Slots(grpc::CallbackServerContext* ctx, const v1::SlotsRequest* req,
                                  v1::SlotsResponse* resp) override;
  grpc::ServerWriteReactor<v1::Event>* StreamEvents(grpc::CallbackServerContext* ctx,
                                                    const v1::StreamEventsRequest* req) override;
  grpc::ServerWriteReactor<v1::EventBatch>* StreamEventBatches(
      grpc::CallbackServerContext* ctx, const v1::StreamEventsRequest* req) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx, const v1::StatsRequest* req,
                                  v1::StatsResponse* resp) override;

 private:
  enum Method {
    kGetCapabilities,
    kReserve,
    kModify,
    kRelease,
    kList,
    kSlots,
    kStreamEvents,
    kStreamEventBatches,
    kStats,
    kMethodCount
  };
  static const char* MethodName(Method m);

  void Count(Method m) { calls_[m].fetch_add(1, std::memory_order_relaxed); }
  // A unary call answered at once with `status`.
  static grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx,
                                          const grpc::Status& status);
  // A refused call: counted (Stats.refusals) and answered with its status.
  grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, const Problem& p);
  static grpc::Status NotBuilt(const char* what);
  // A stream of the caller's events, written as `Message`s.
  template <typename Message>
  grpc::ServerWriteReactor<Message>* OpenStream(grpc::CallbackServerContext* ctx,
                                                const v1::StreamEventsRequest* req,
                                                size_t capacity);
  // The caller of this call, or nullopt (then `status` says why).
  std::optional<Peer> Caller(grpc::CallbackServerContext* ctx, grpc::Status* status) const;

  const v1::Capabilities caps_;
  const PeerRegistry& peers_;
  ReservationManager& reservations_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::array<std::atomic<uint64_t>, kMethodCount> calls_{};
  std::atomic<uint64_t> refusals_{0};
};

}  // namespace hwwatch::daemon
