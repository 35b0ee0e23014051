// x86 debug register encodings (pure; compiled and tested on every host).
//
// DR0-DR3 hold linear addresses. DR7 controls them: for slot i, bit 2i is the
// local enable (L), bit 2i+1 the global enable (G); bits 16+4i..17+4i the
// condition R/W (00 execute, 01 write, 10 I/O, 11 read or write) and bits
// 18+4i..19+4i the length LEN (00 1 byte, 01 2, 11 4, 10 8 bytes). A data
// watch must be naturally aligned to its length. DR6 reports which slot's
// condition was met (B0-B3), single-step (BS), task switch (BT) and debug
// register access (BD); Linux hands user space the architectural polarity.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/arch.h"

namespace hwwatch::arch::x86 {

inline constexpr unsigned kSlots = 4;

enum class Condition : uint8_t { kExecute = 0, kWrite = 1, kIo = 2, kReadWrite = 3 };

// LEN field for a length in bytes (1, 2, 4, 8), or nullopt.
constexpr std::optional<uint8_t> EncodeLen(unsigned bytes) {
  switch (bytes) {
    case 1:
      return 0b00;
    case 2:
      return 0b01;
    case 4:
      return 0b11;
    case 8:
      return 0b10;  // the odd one out: 8 bytes is 10, not 11
    default:
      return std::nullopt;
  }
}

constexpr unsigned DecodeLen(uint8_t len) {
  switch (len & 3) {
    case 0b00:
      return 1;
    case 0b01:
      return 2;
    case 0b11:
      return 4;
    default:
      return 8;
  }
}

// The R/W condition for an access kind; x86 has no read-only watch.
constexpr std::optional<Condition> ConditionFor(Access a) {
  switch (a) {
    case Access::kWrite:
      return Condition::kWrite;
    case Access::kReadWrite:
      return Condition::kReadWrite;
    case Access::kExecute:
      return Condition::kExecute;
    case Access::kRead:
      break;
  }
  return std::nullopt;
}

// One slot's view of DR7.
struct Dr7Slot {
  bool local = false;
  bool global = false;
  Condition condition = Condition::kExecute;
  unsigned length = 1;  // bytes

  bool enabled() const { return local || global; }
  friend bool operator==(const Dr7Slot&, const Dr7Slot&) = default;
};

inline constexpr uint64_t kDr7LocalExact = 1u << 8;      // LE
inline constexpr uint64_t kDr7GlobalExact = 1u << 9;     // GE
inline constexpr uint64_t kDr7GeneralDetect = 1u << 13;  // GD

constexpr unsigned Dr7ControlShift(unsigned slot) { return 16 + 4 * slot; }

// All of slot i's bits in DR7 (enables, R/W, LEN).
constexpr uint64_t Dr7SlotMask(unsigned slot) {
  return (uint64_t{3} << (2 * slot)) | (uint64_t{0xf} << Dr7ControlShift(slot));
}

// DR7 with slot i's bits replaced (other slots untouched). Execute
// conditions force LEN to 1 byte, as the architecture requires. Returns
// nullopt for a slot >= 4 or a length the hardware has no LEN for.
constexpr std::optional<uint64_t> Dr7WithSlot(uint64_t dr7, unsigned slot, const Dr7Slot& s) {
  if (slot >= kSlots) return std::nullopt;
  unsigned length = s.condition == Condition::kExecute ? 1 : s.length;
  std::optional<uint8_t> len = EncodeLen(length);
  if (!len) return std::nullopt;
  uint64_t v = dr7 & ~Dr7SlotMask(slot);
  if (s.local) v |= uint64_t{1} << (2 * slot);
  if (s.global) v |= uint64_t{1} << (2 * slot + 1);
  uint64_t control = static_cast<uint64_t>(s.condition) | (uint64_t{*len} << 2);
  v |= control << Dr7ControlShift(slot);
  return v;
}

// DR7 with slot i disabled and its fields zeroed.
constexpr uint64_t Dr7WithoutSlot(uint64_t dr7, unsigned slot) {
  return slot >= kSlots ? dr7 : dr7 & ~Dr7SlotMask(slot);
}

constexpr Dr7Slot Dr7GetSlot(uint64_t dr7, unsigned slot) {
  Dr7Slot s;
  if (slot >= kSlots) return s;
  s.local = (dr7 >> (2 * slot)) & 1;
  s.global = (dr7 >> (2 * slot + 1)) & 1;
  uint64_t control = (dr7 >> Dr7ControlShift(slot)) & 0xf;
  s.condition = static_cast<Condition>(control & 3);
  s.length = DecodeLen(static_cast<uint8_t>(control >> 2));
  return s;
}

// A local-enabled watch of `length` bytes for `access`, or nullopt when the
// hardware cannot express it (read-only access, bad length).
constexpr std::optional<Dr7Slot> Dr7SlotFor(Access access, unsigned length) {
  std::optional<Condition> c = ConditionFor(access);
  if (!c) return std::nullopt;
  if (*c != Condition::kExecute && !EncodeLen(length)) return std::nullopt;
  return Dr7Slot{true, false, *c, *c == Condition::kExecute ? 1u : length};
}

// Decoded DR6.
struct Dr6Status {
  uint8_t hits = 0;           // B0-B3 as bits 0-3
  bool debug_access = false;  // BD (bit 13): DR access with GD set
  bool single_step = false;   // BS (bit 14)
  bool task_switch = false;   // BT (bit 15)
  bool bus_lock = false;      // BLD (bit 11), active low
  bool rtm = false;           // RTM (bit 16), active low

  bool Hit(unsigned slot) const { return slot < kSlots && ((hits >> slot) & 1); }
  // The lowest slot that fired, or nullopt.
  std::optional<unsigned> FirstHit() const {
    for (unsigned i = 0; i < kSlots; ++i) {
      if (Hit(i)) return i;
    }
    return std::nullopt;
  }
};

constexpr Dr6Status DecodeDr6(uint64_t dr6) {
  Dr6Status s;
  s.hits = static_cast<uint8_t>(dr6 & 0xf);
  s.bus_lock = !((dr6 >> 11) & 1);
  s.debug_access = (dr6 >> 13) & 1;
  s.single_step = (dr6 >> 14) & 1;
  s.task_switch = (dr6 >> 15) & 1;
  s.rtm = !((dr6 >> 16) & 1);
  return s;
}

}  // namespace hwwatch::arch::x86
