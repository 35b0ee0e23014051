// Reservations: validated, authorized, admitted through the constraint
// engine, armed through a backend, owned by a session. Knows protobuf
// messages (the API's vocabulary) but not gRPC; failures are Problems that
// the service maps to status codes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "arch/capabilities.h"
#include "arch/perf_event.h"
#include "daemon/engine/constraints.h"
#include "daemon/peers.h"
#include "daemon/problem.h"
#include "daemon/request_check.h"
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
  ReservationManager(arch::HostCapabilities caps, engine::LockMode lock, ReservationLimits limits);
  ~ReservationManager();

  Reply<v1::Reservation> Reserve(const Peer& caller, const v1::ReserveRequest& req);
  Reply<bool> Release(const Peer& caller, uint64_t id);
  std::vector<v1::Reservation> List(const Peer& caller, bool all) const;
  v1::SlotsResponse Slots(const v1::SlotsRequest& req);
  // The session's peer went away: release what it owns.
  void SessionEnded(uint64_t session_id);

  uint64_t active() const;
  uint64_t refusals() const;
  engine::LockMode lock_mode() const { return engine_.config().lock; }

 private:
  struct Entry;

  Refused Fail(Code code, std::string message, std::optional<v1::Refusal> refusal = {});
  std::optional<Refused> Authorize(const Peer& caller, const TargetSpec& target,
                                   const WatchSpec& watch) const;
  v1::Refusal FromEngine(const engine::Refusal& r) const;
  void Disarm(Entry& e);

  const arch::HostCapabilities caps_;
  const ReservationLimits limits_;
  engine::Engine engine_;

  mutable std::mutex mu_;  // guards the maps below
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;
  std::unordered_map<uid_t, unsigned> held_by_uid_;
  uint64_t refusals_ = 0;
};

}  // namespace hwwatch::daemon
