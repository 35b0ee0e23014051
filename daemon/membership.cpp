#include "daemon/membership.h"

#include <algorithm>

namespace hwwatch::daemon {

void Membership::Join(uint64_t group, uint64_t id, uint64_t session) {
  MutexLock lock(mu_);
  session_[id] = session;
  group_[id] = group;
  auto& members = members_[group];
  if (std::find(members.begin(), members.end(), id) == members.end()) members.push_back(id);
}

size_t Membership::Leave(uint64_t id) {
  MutexLock lock(mu_);
  session_.erase(id);
  auto g = group_.find(id);
  if (g == group_.end()) return 0;
  const uint64_t group = g->second;
  group_.erase(g);
  auto it = members_.find(group);
  if (it == members_.end()) return 0;
  std::erase(it->second, id);
  const size_t left = it->second.size();
  if (left == 0) members_.erase(it);
  return left;
}

void Membership::SetSession(uint64_t id, uint64_t session) {
  MutexLock lock(mu_);
  if (auto it = session_.find(id); it != session_.end()) it->second = session;
}

std::vector<uint64_t> Membership::Members(uint64_t group) const {
  MutexLock lock(mu_);
  auto it = members_.find(group);
  return it == members_.end() ? std::vector<uint64_t>{} : it->second;
}

size_t Membership::Count(uint64_t group) const {
  MutexLock lock(mu_);
  auto it = members_.find(group);
  return it == members_.end() ? 0 : it->second.size();
}

std::optional<uint64_t> Membership::SessionOf(uint64_t id) const {
  MutexLock lock(mu_);
  auto it = session_.find(id);
  if (it == session_.end()) return std::nullopt;
  return it->second;
}

}  // namespace hwwatch::daemon
