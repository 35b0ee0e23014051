#include "daemon/event_hub.h"

#include <algorithm>

#include "daemon/events.h"

namespace hwwatch::daemon {

std::optional<Event> EventStream::Pop() {
  MutexLock lock(mu_);
  Event e;
  if (lost_pending_ > 0) {
    e = LostEvent(lost_pending_);
    lost_pending_ = 0;
  } else if (!queue_.empty()) {
    e = std::move(queue_.front());
    queue_.pop_front();
  } else {
    return std::nullopt;
  }
  e.sequence = ++sequence_;
  return e;
}

std::vector<Event> EventStream::PopBatch(size_t max) {
  std::vector<Event> out;
  MutexLock lock(mu_);
  out.reserve(std::min(max, queue_.size() + 1));
  if (lost_pending_ > 0 && max > 0) {
    out.push_back(LostEvent(lost_pending_));
    out.back().sequence = ++sequence_;
    lost_pending_ = 0;
  }
  while (out.size() < max && !queue_.empty()) {
    out.push_back(std::move(queue_.front()));
    queue_.pop_front();
    out.back().sequence = ++sequence_;
  }
  return out;
}

bool EventStream::Push(const Event& e, bool* was_empty) {
  MutexLock lock(mu_);
  *was_empty = queue_.empty() && lost_pending_ == 0;
  if (queue_.size() >= capacity_) {
    ++lost_pending_;
    return false;
  }
  queue_.push_back(e);
  return true;
}

void EventStream::CallNotify() {
  MutexLock lock(notify_mu_);
  if (notify_) notify_();
}

void EventStream::Kick() { CallNotify(); }

std::shared_ptr<EventStream> EventHub::Subscribe(uint64_t session, std::vector<uint64_t> ids,
                                                 bool lifecycle, EventStream::Notify notify,
                                                 size_t capacity) {
  std::shared_ptr<EventStream> s(
      new EventStream(session, std::unordered_set<uint64_t>(ids.begin(), ids.end()), lifecycle,
                      capacity == 0 ? capacity_ : capacity, std::move(notify)));
  MutexLock lock(mu_);
  streams_.push_back(s);
  return s;
}

void EventHub::Unsubscribe(const std::shared_ptr<EventStream>& s) {
  {
    MutexLock lock(mu_);
    std::erase(streams_, s);
  }
  MutexLock lock(s->notify_mu_);
  s->notify_ = nullptr;
}

bool EventStream::Follows(uint64_t reservation, std::optional<uint64_t> owner,
                          bool lifecycle) const {
  if (lifecycle && !lifecycle_) return false;
  return ids_.empty() ? owner && *owner == session_ : ids_.contains(reservation);
}

bool EventHub::Wanted(uint64_t reservation, bool lifecycle) const {
  const std::optional<uint64_t> owner = membership_.SessionOf(reservation);
  MutexLock lock(mu_);
  return std::any_of(streams_.begin(), streams_.end(),
                     [&](const auto& s) { return s->Follows(reservation, owner, lifecycle); });
}

void EventHub::Publish(uint64_t reservation, const Event& e, bool lifecycle) {
  const std::optional<uint64_t> owner = membership_.SessionOf(reservation);
  MutexLock lock(mu_);
  for (const auto& s : streams_) {
    if (!s->Follows(reservation, owner, lifecycle)) continue;
    bool was_empty = false;
    if (s->Push(e, &was_empty)) {
      ++sent_;
    } else {
      ++lost_;
    }
    if (was_empty) s->CallNotify();
  }
}

void EventHub::PublishGroup(uint64_t group, const Event& e, bool lifecycle) {
  const std::vector<uint64_t> members = membership_.Members(group);
  if (members.empty()) return Publish(group, e, lifecycle);
  for (uint64_t m : members) Publish(m, ForMember(e, m), lifecycle);
}

uint64_t EventHub::sent() const {
  MutexLock lock(mu_);
  return sent_;
}

uint64_t EventHub::lost() const {
  MutexLock lock(mu_);
  return lost_;
}

size_t EventHub::streams() const {
  MutexLock lock(mu_);
  return streams_.size();
}

}  // namespace hwwatch::daemon
