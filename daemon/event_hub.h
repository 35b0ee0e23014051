// Event routing: hits and lifecycle events of reservations, to the streams
// (StreamEvents calls) that follow them. No gRPC, no I/O.
//
// Each stream has a bounded queue. A producer (the sample reader, the
// reservation manager) never blocks on a stream: when a queue is full the
// event is dropped and counted, and the stream's reader gets one EventsLost
// with the count before its next event. Events of a reservation go to the
// streams of its owner: streams of the owning session that follow "every
// reservation of the session", and streams that named the reservation (the
// manager checks at subscribe time that the caller may follow it).
//
// Lock order: EventHub::mu_ -> Stream::notify_mu_ -> (the consumer's own
// lock, taken inside its notify callback) -> Stream::mu_. Consumers call
// Pop() without holding anything of the hub.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "hwwatch/v1/hwwatch.pb.h"

namespace hwwatch::daemon {

namespace v1 = ::hwwatch::v1;

// The wall clock with nanoseconds, for Event.time.
google::protobuf::Timestamp Now();

class EventStream {
 public:
  // Called (from a producer's thread) when the queue goes from empty to
  // non-empty, and by Kick(); must not call back into the hub.
  using Notify = std::function<void()>;

  // The next event to send: a pending EventsLost first, then the oldest
  // queued event, sequence-numbered.
  std::optional<v1::Event> Pop();
  // Calls the notify callback (e.g. once the consumer is ready).
  void Kick();

  uint64_t session() const { return session_; }

 private:
  friend class EventHub;
  EventStream(uint64_t session, std::unordered_set<uint64_t> ids, bool lifecycle, size_t capacity,
              Notify notify)
      : session_(session),
        ids_(std::move(ids)),
        lifecycle_(lifecycle),
        capacity_(capacity),
        notify_(std::move(notify)) {}
  // Queues `e`; false when the queue was full (the event is counted lost).
  bool Push(const v1::Event& e, bool* was_empty);
  void CallNotify();

  const uint64_t session_;
  const std::unordered_set<uint64_t> ids_;  // empty: the whole session
  const bool lifecycle_;
  const size_t capacity_;

  std::mutex notify_mu_;  // guards notify_ (cleared when unsubscribed)
  Notify notify_;

  std::mutex mu_;  // guards the queue and counters
  std::deque<v1::Event> queue_;
  uint64_t lost_pending_ = 0;
  uint64_t sequence_ = 0;
};

class EventHub {
 public:
  // Events a stream may hold before it loses them.
  static constexpr size_t kDefaultCapacity = 4096;

  explicit EventHub(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // Who owns a reservation (set by the manager on reserve and reclaim).
  void SetOwner(uint64_t reservation, uint64_t session);
  void Forget(uint64_t reservation);

  // A stream of the session's reservations (ids empty) or of `ids`.
  std::shared_ptr<EventStream> Subscribe(uint64_t session, std::vector<uint64_t> ids,
                                         bool lifecycle, EventStream::Notify notify);
  // After this returns the stream's notify callback is never called again.
  void Unsubscribe(const std::shared_ptr<EventStream>& s);

  // Delivers `e` (a hit when !lifecycle) of `reservation` to the streams
  // following it. Never blocks on a consumer.
  void Publish(uint64_t reservation, const v1::Event& e, bool lifecycle);

  // Reservations sharing registers: events of the registers (published for
  // `group`) reach every member, each under its own reservation id.
  void SetMembers(uint64_t group, std::vector<uint64_t> members);
  void PublishGroup(uint64_t group, const v1::Event& e, bool lifecycle);

  uint64_t sent() const;  // events queued to some stream
  uint64_t lost() const;  // events dropped on full queues
  size_t streams() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;                                        // guards the members below
  std::unordered_map<uint64_t, uint64_t> owner_;                 // reservation -> session
  std::unordered_map<uint64_t, std::vector<uint64_t>> members_;  // group -> ids
  std::vector<std::shared_ptr<EventStream>> streams_;
  uint64_t sent_ = 0;
  uint64_t lost_ = 0;
};

}  // namespace hwwatch::daemon
