// The service edge: protobuf messages to and from the daemon's vocabulary
// (daemon/types.h), and Problems to gRPC statuses. Nothing below the
// service includes this file.
#pragma once

#include <grpcpp/grpcpp.h>

#include "arch/capabilities.h"
#include "arch/self_test.h"
#include "daemon/error.h"
#include "daemon/types.h"
#include "hwwatch/v1/hwwatch.pb.h"

namespace hwwatch::daemon {

namespace v1 = ::hwwatch::v1;

// Requests. Enum values the API does not define are refused here.
TargetSpec FromProto(const v1::Target& t);
WatchRequest FromProto(const v1::Watch& w);
Result<ReserveArgs> FromProto(const v1::ReserveRequest& r);
SlotsArgs FromProto(const v1::SlotsRequest& r);

// Answers.
v1::Target ToProto(const TargetSpec& t);
v1::Watch ToProto(const WatchRequest& w);
v1::Reservation ToProto(const ReservationInfo& r);
v1::Refusal ToProto(const Refusal& r);
v1::SlotsResponse ToProto(const SlotsView& s);
v1::Event ToProto(const Event& e);
v1::SlotType ToProto(arch::SlotType t);

// The code 1:1 as a gRPC status; a refusal travels as ErrorDetails in the
// status's binary details.
grpc::StatusCode ToGrpc(Code c);
grpc::Status ToStatus(const Problem& p);

// The GetCapabilities answer from what arch/ discovered.
v1::Capabilities CapabilitiesToProto(const arch::HostCapabilities& caps);
v1::SelfTestResult SelfTestToProto(const arch::SelfTestResult& r);
v1::Backend BackendToProto(arch::Backend b);

}  // namespace hwwatch::daemon
