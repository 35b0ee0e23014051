// libFuzzer target: the DR7 and DBGWCR/DBGBCR codecs. Decoding any value
// and encoding it again must give back the bits the decoder understood;
// encoding a slot must not touch the other slots.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "arch/arm64_debugreg.h"
#include "arch/x86_debugreg.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hwwatch::arch;
  if (size < 13) return 0;
  uint64_t dr7;
  uint32_t wcr;
  std::memcpy(&dr7, data, 8);
  std::memcpy(&wcr, data + 8, 4);
  const unsigned slot = data[12] % 5;  // 4: out of range
  // x86: a decoded slot re-encoded in place leaves DR7 unchanged (LEN 2
  // for an execute slot is what the hardware reads as 1 byte: skip it).
  const x86::Dr7Slot s = x86::Dr7GetSlot(dr7, slot);
  if (slot < x86::kSlots && !(s.condition == x86::Condition::kExecute && s.length != 1)) {
    auto again = x86::Dr7WithSlot(dr7, slot, s);
    if (again && *again != dr7) __builtin_trap();
  }
  // Clearing a slot touches only its own bits.
  const uint64_t cleared = x86::Dr7WithoutSlot(dr7, slot);
  if (slot < x86::kSlots && ((cleared ^ dr7) & ~x86::Dr7SlotMask(slot)) != 0) __builtin_trap();
  if (slot < x86::kSlots && x86::Dr7GetSlot(cleared, slot).enabled()) __builtin_trap();
  (void)x86::DecodeDr6(dr7);
  // arm64: the fields the codec knows survive a round trip.
  const arm64::Wcr w = arm64::DecodeWcr(wcr);
  if (arm64::DecodeWcr(arm64::EncodeWcr(w)).bas != w.bas) __builtin_trap();
  if (arm64::EncodeWcr(arm64::DecodeWcr(arm64::EncodeWcr(w))) != arm64::EncodeWcr(w)) {
    __builtin_trap();
  }
  const arm64::Bcr b = arm64::DecodeBcr(wcr);
  if (arm64::EncodeBcr(arm64::DecodeBcr(arm64::EncodeBcr(b))) != arm64::EncodeBcr(b)) {
    __builtin_trap();
  }
  if (auto range = arm64::BasRange(static_cast<uint8_t>(wcr))) {
    auto bas = arm64::BasFor(range->offset, range->length);
    if (!bas || *bas != static_cast<uint8_t>(wcr)) __builtin_trap();
  }
  return 0;
}
