// Test support: hwwatch::v1 requests in one line each, so that a test
// shows what it asks for rather than how the proto is filled in:
//   c->Reserve(Request().Tid(tid).At(0x10000, 8));
//   c->Modify(id, Watch(0x20000, 32));
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "hwwatch/v1/hwwatch.pb.h"

namespace hwwatch::testing {

inline v1::Watch Watch(uint64_t address, uint64_t length, v1::Access access = v1::ACCESS_WRITE) {
  v1::Watch w;
  w.set_address(address);
  w.set_length(length);
  w.set_access(access);
  return w;
}

// The same watch, allowed larger registers than the region (over_cover).
inline v1::Watch OverCover(v1::Watch w) {
  w.set_over_cover(true);
  return w;
}

inline v1::Target Tid(pid_t tid) {
  v1::Target t;
  t.set_tid(tid);
  return t;
}

inline v1::Target Pid(pid_t pid) {
  v1::Target t;
  t.set_pid(pid);
  return t;
}

inline v1::Target Cpu(uint32_t cpu) {
  v1::Target t;
  t.set_cpu(cpu);
  return t;
}

// A ReserveRequest, field by field; only the fields named are set, so a
// test that leaves one out sends it unset. Converts to the proto where one
// is expected.
class Request {
 public:
  Request& Target(const v1::Target& target) {
    *req_.mutable_target() = target;
    return *this;
  }
  Request& Tid(pid_t tid) { return Target(::hwwatch::testing::Tid(tid)); }
  Request& Pid(pid_t pid) { return Target(::hwwatch::testing::Pid(pid)); }
  Request& Cpu(uint32_t cpu) { return Target(::hwwatch::testing::Cpu(cpu)); }
  Request& Watch(const v1::Watch& watch) {
    *req_.mutable_watch() = watch;
    return *this;
  }
  Request& At(uint64_t address, uint64_t length, v1::Access access = v1::ACCESS_WRITE) {
    return Watch(::hwwatch::testing::Watch(address, length, access));
  }
  Request& Backend(v1::Backend backend) {
    req_.set_backend(backend);
    return *this;
  }
  Request& Delivery(v1::Delivery delivery) {
    req_.set_delivery(delivery);
    return *this;
  }
  Request& Slot(uint32_t slot) {
    req_.set_slot(slot);
    return *this;
  }
  Request& LeaseSeconds(int64_t seconds) {
    req_.mutable_lease()->set_seconds(seconds);
    return *this;
  }
  operator v1::ReserveRequest() const { return req_; }  // NOLINT(google-explicit-constructor)

 private:
  v1::ReserveRequest req_;
};

}  // namespace hwwatch::testing
