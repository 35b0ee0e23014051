#include "daemon/event_hub.h"

#include <time.h>

#include <algorithm>

namespace hwwatch::daemon {

google::protobuf::Timestamp Now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  google::protobuf::Timestamp t;
  t.set_seconds(ts.tv_sec);
  t.set_nanos(static_cast<int32_t>(ts.tv_nsec));
  return t;
}

std::optional<v1::Event> EventStream::Pop() {
  std::lock_guard lock(mu_);
  v1::Event e;
  if (lost_pending_ > 0) {
    e.mutable_lost()->set_count(lost_pending_);
    *e.mutable_time() = Now();
    lost_pending_ = 0;
  } else if (!queue_.empty()) {
    e = std::move(queue_.front());
    queue_.pop_front();
  } else {
    return std::nullopt;
  }
  e.set_sequence(++sequence_);
  return e;
}

bool EventStream::Push(const v1::Event& e, bool* was_empty) {
  std::lock_guard lock(mu_);
  *was_empty = queue_.empty() && lost_pending_ == 0;
  if (queue_.size() >= capacity_) {
    ++lost_pending_;
    return false;
  }
  queue_.push_back(e);
  return true;
}

void EventStream::CallNotify() {
  std::lock_guard lock(notify_mu_);
  if (notify_) notify_();
}

void EventStream::Kick() { CallNotify(); }

void EventHub::SetOwner(uint64_t reservation, uint64_t session) {
  std::lock_guard lock(mu_);
  owner_[reservation] = session;
}

void EventHub::Forget(uint64_t reservation) {
  std::lock_guard lock(mu_);
  owner_.erase(reservation);
}

std::shared_ptr<EventStream> EventHub::Subscribe(uint64_t session, std::vector<uint64_t> ids,
                                                 bool lifecycle, EventStream::Notify notify) {
  std::shared_ptr<EventStream> s(
      new EventStream(session, std::unordered_set<uint64_t>(ids.begin(), ids.end()), lifecycle,
                      capacity_, std::move(notify)));
  std::lock_guard lock(mu_);
  streams_.push_back(s);
  return s;
}

void EventHub::Unsubscribe(const std::shared_ptr<EventStream>& s) {
  {
    std::lock_guard lock(mu_);
    std::erase(streams_, s);
  }
  std::lock_guard lock(s->notify_mu_);
  s->notify_ = nullptr;
}

void EventHub::Publish(uint64_t reservation, const v1::Event& e, bool lifecycle) {
  std::lock_guard lock(mu_);
  auto owner = owner_.find(reservation);
  for (const auto& s : streams_) {
    if (lifecycle && !s->lifecycle_) continue;
    const bool follows = s->ids_.empty() ? owner != owner_.end() && owner->second == s->session_
                                         : s->ids_.contains(reservation);
    if (!follows) continue;
    bool was_empty = false;
    if (s->Push(e, &was_empty)) {
      ++sent_;
    } else {
      ++lost_;
    }
    if (was_empty) s->CallNotify();
  }
}

void EventHub::SetMembers(uint64_t group, std::vector<uint64_t> members) {
  std::lock_guard lock(mu_);
  if (members.empty()) {
    members_.erase(group);
  } else {
    members_[group] = std::move(members);
  }
}

void EventHub::PublishGroup(uint64_t group, const v1::Event& e, bool lifecycle) {
  std::vector<uint64_t> members;
  {
    std::lock_guard lock(mu_);
    if (auto it = members_.find(group); it != members_.end()) members = it->second;
  }
  if (members.empty()) return Publish(group, e, lifecycle);
  for (uint64_t m : members) {
    v1::Event copy = e;
    if (copy.has_hit()) copy.mutable_hit()->set_reservation_id(m);
    if (copy.has_thread_added()) copy.mutable_thread_added()->set_reservation_id(m);
    if (copy.has_exited()) copy.mutable_exited()->set_reservation_id(m);
    Publish(m, copy, lifecycle);
  }
}

uint64_t EventHub::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

uint64_t EventHub::lost() const {
  std::lock_guard lock(mu_);
  return lost_;
}

size_t EventHub::streams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

}  // namespace hwwatch::daemon
