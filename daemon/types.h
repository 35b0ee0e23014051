// The daemon's vocabulary: requests, reservations, slot views and events as
// plain structs. The service converts between these and the protobuf API
// at its edge (daemon/convert.h); below it nothing knows protobuf.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "arch/arch.h"
#include "arch/region.h"
#include "daemon/error.h"

namespace hwwatch::daemon {

struct TargetSpec {
  // kNone: the request named no target (refused by CheckTarget).
  enum class Kind { kNone, kThread, kProcess, kCpu, kThreadOnCpu };
  Kind kind = Kind::kThread;
  pid_t tid = 0;     // thread or process id (unused for kCpu)
  unsigned cpu = 0;  // kCpu and kThreadOnCpu

  bool is_task() const { return kind != Kind::kCpu; }
  // Equal targets share registers (see ShareKey).
  bool operator==(const TargetSpec&) const = default;
};

// A watch as the caller asked for it (echoed back in reservations).
struct WatchRequest {
  uint64_t address = 0;
  uint64_t length = 0;
  std::optional<arch::Access> access;  // none: missing or unknown
  bool over_cover = false;
  std::string symbol;     // the name the client looked the address up by
  bool changed = false;   // report only hits that change the bytes
  std::string condition;  // "value [& MASK] OP N", or empty
  bool operator==(const WatchRequest&) const = default;
};

// A parsed WatchRequest::condition: (value & mask) op operand, the value
// being the region's bytes as a little-endian integer of its length.
struct Condition {
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
  Op op = Op::kEq;
  uint64_t mask = ~uint64_t{0};
  uint64_t operand = 0;
  bool is_signed = false;  // N was negative: compare as signed integers
};

// A checked watch with the registers chosen for it.
struct WatchSpec {
  arch::Region region;
  arch::CoverMode mode = arch::CoverMode::kExact;
  arch::Cover cover;
  // Filters evaluated at the trap (BPF capture only).
  bool changed = false;
  std::optional<Condition> condition;
  bool filtered() const { return changed || condition.has_value(); }
  unsigned weight() const { return cover.needed(); }
};

enum class BackendChoice { kAuto, kPerf, kPtrace };
enum class Delivery { kDefault, kSamples, kStop, kCount };

struct Lease {
  int64_t seconds = 0;
  int32_t nanos = 0;
};

struct ReserveArgs {
  TargetSpec target;
  WatchRequest watch;
  BackendChoice backend = BackendChoice::kAuto;
  Delivery delivery = Delivery::kDefault;
  std::optional<unsigned> slot;  // a chosen debug register (ptrace)
  Lease lease;
  std::string label;
  bool capture_value = false;
  std::optional<uint64_t> reclaim;  // take back an orphaned reservation
};

struct Owner {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  uint64_t session_id = 0;
};

struct RegisterInfo {
  uint64_t address = 0;
  uint32_t length = 0;
  std::optional<unsigned> slot;  // ptrace backend on a thread: DRn
};

struct ReservationInfo {
  uint64_t id = 0;
  TargetSpec target;
  WatchRequest watch;
  BackendChoice backend = BackendChoice::kPerf;
  Delivery delivery = Delivery::kSamples;
  arch::SlotType slot_type = arch::SlotType::kData;
  unsigned weight = 0;
  std::vector<RegisterInfo> registers;
  Owner owner;
  timespec created{};
  Lease lease;
  std::string label;
  unsigned sharers = 1;
  // The kernel's count of the reservation's events (children included),
  // and what became of them.
  uint64_t hits = 0;
  uint64_t delivered = 0, filtered = 0, lost = 0;
  bool orphaned = false;
};

struct SlotsArgs {
  bool probe = false;  // would `watch` on `target` fit?
  TargetSpec target{TargetSpec::Kind::kNone, 0, 0};
  WatchRequest watch;
};

// The parts of SlotsView (at namespace scope: a nested struct with member
// initializers is not default-constructible inside its enclosing class
// for clang 14's std::optional).
namespace slots {
struct Cpu {
  unsigned cpu = 0;
  arch::SlotType slot_type = arch::SlotType::kData;
  unsigned slots = 0, cpu_pinned = 0, max_task_pinned = 0, free = 0;
  std::vector<unsigned> tasks_by_slots;
};
struct Task {
  pid_t tid = 0;
  arch::SlotType slot_type = arch::SlotType::kData;
  unsigned all_cpus = 0;
  std::map<unsigned, unsigned> per_cpu;
  std::optional<unsigned> held_outside;  // measured in the kernel
};
struct Probe {
  bool fits = false;
  unsigned weight = 0;
  std::vector<RegisterInfo> registers;
  std::optional<Refusal> refusal;
  std::optional<unsigned> held_outside;  // task targets: measured in the kernel
};
}  // namespace slots

struct SlotsView {
  using Cpu = slots::Cpu;
  using Task = slots::Task;
  using Probe = slots::Probe;
  std::vector<Cpu> cpus;
  std::vector<Task> tasks;
  std::optional<Probe> probe;
};

// A hit as a backend saw it, for the registers of group `group`.
struct RawHit {
  uint64_t group = 0;
  pid_t tid = 0;
  uint64_t ip = 0;
  uint64_t address = 0;
  std::optional<unsigned> slot;
  std::optional<std::string> value;
  std::optional<std::string> old_value;  // with a value read at the trap
  bool value_at_trap = false;
  std::optional<unsigned> cpu;
};

// The kinds of Event (below; at namespace scope for the same reason).
namespace event {
struct Hit {
  uint64_t reservation_id = 0;
  pid_t tid = 0;
  uint64_t ip = 0;
  uint64_t address = 0;
  std::optional<unsigned> slot;
  std::optional<std::string> value;
  std::optional<std::string> old_value;
  bool value_at_trap = false;
  std::optional<unsigned> cpu;
};
struct ThreadAdded {
  uint64_t reservation_id = 0;
  pid_t pid = 0, tid = 0;
};
struct Execed {
  uint64_t reservation_id = 0;
  pid_t pid = 0;
};
struct Exited {
  uint64_t reservation_id = 0;
  pid_t tid = 0;
};
struct Lost {
  uint64_t count = 0;
};
struct Released {
  uint64_t reservation_id = 0;
  std::string why;
  // The reservation's final counts (as List showed them).
  uint64_t hits = 0, delivered = 0, filtered = 0, lost = 0;
};
}  // namespace event

// What a stream carries (v1.Event). Built only by the functions in
// daemon/events.h.
struct Event {
  using Hit = event::Hit;
  using ThreadAdded = event::ThreadAdded;
  using Execed = event::Execed;
  using Exited = event::Exited;
  using Lost = event::Lost;
  using Released = event::Released;
  uint64_t sequence = 0;  // per stream, set when popped
  timespec time{};
  std::variant<Hit, ThreadAdded, Execed, Exited, Lost, Released> kind;
};

}  // namespace hwwatch::daemon
