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
// Pop() without holding anything of the hub. Membership's lock is taken
// before the hub's, never inside it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

#include "daemon/membership.h"
#include "daemon/thread_annotations.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

class EventStream {
 public:
  // Called (from a producer's thread) when the queue goes from empty to
  // non-empty, and by Kick(); must not call back into the hub.
  using Notify = std::function<void()>;

  // The next event to send: a pending EventsLost first, then the oldest
  // queued event, sequence-numbered.
  std::optional<Event> Pop() EXCLUDES(mu_);
  // Up to `max` of them at once, in the same order.
  std::vector<Event> PopBatch(size_t max) EXCLUDES(mu_);
  // Calls the notify callback (e.g. once the consumer is ready).
  void Kick() EXCLUDES(notify_mu_);

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
  // Whether an event of `reservation` (owned by session `owner`) is for
  // this stream.
  bool Follows(uint64_t reservation, std::optional<uint64_t> owner, bool lifecycle) const;
  // Queues `e`; false when the queue was full (the event is counted lost).
  bool Push(const Event& e, bool* was_empty) EXCLUDES(mu_);
  void CallNotify() EXCLUDES(notify_mu_);

  const uint64_t session_;
  const std::unordered_set<uint64_t> ids_;  // empty: the whole session
  const bool lifecycle_;
  const size_t capacity_;

  Mutex notify_mu_ ACQUIRED_BEFORE(mu_);
  Notify notify_ GUARDED_BY(notify_mu_);  // cleared when unsubscribed

  Mutex mu_;
  std::deque<Event> queue_ GUARDED_BY(mu_);
  uint64_t lost_pending_ GUARDED_BY(mu_) = 0;
  uint64_t sequence_ GUARDED_BY(mu_) = 0;
};

class EventHub {
 public:
  // Events a stream may hold before it loses them (batched streams: more).
  static constexpr size_t kDefaultCapacity = 4096;
  static constexpr size_t kBatchedCapacity = 65536;

  // Routes by `membership` (who owns and who shares each reservation).
  explicit EventHub(const Membership& membership, size_t capacity = kDefaultCapacity)
      : membership_(membership), capacity_(capacity) {}

  // A stream of the session's reservations (ids empty) or of `ids`.
  // `capacity` 0: the hub's default.
  std::shared_ptr<EventStream> Subscribe(uint64_t session, std::vector<uint64_t> ids,
                                         bool lifecycle, EventStream::Notify notify,
                                         size_t capacity = 0) EXCLUDES(mu_);
  // After this returns the stream's notify callback is never called again.
  void Unsubscribe(const std::shared_ptr<EventStream>& s) EXCLUDES(mu_);

  // Delivers `e` (a hit when !lifecycle) of `reservation` to the streams
  // following it. Never blocks on a consumer.
  void Publish(uint64_t reservation, const Event& e, bool lifecycle) EXCLUDES(mu_);
  // Whether some stream follows `reservation` now (Publish would queue an
  // event of it): an event nobody reads need not be built.
  bool Wanted(uint64_t reservation, bool lifecycle) const EXCLUDES(mu_);
  // An event of the registers of `group`: every member gets it under its
  // own reservation id.
  void PublishGroup(uint64_t group, const Event& e, bool lifecycle) EXCLUDES(mu_);

  uint64_t sent() const EXCLUDES(mu_);  // events queued to some stream
  uint64_t lost() const EXCLUDES(mu_);  // events dropped on full queues
  size_t streams() const EXCLUDES(mu_);

 private:
  const Membership& membership_;
  const size_t capacity_;
  mutable Mutex mu_;  // before any stream's locks
  std::vector<std::shared_ptr<EventStream>> streams_ GUARDED_BY(mu_);
  uint64_t sent_ GUARDED_BY(mu_) = 0;
  uint64_t lost_ GUARDED_BY(mu_) = 0;
};

}  // namespace hwwatch::daemon
