// arm64 debug register encodings as Linux exposes them through
// NT_ARM_HW_WATCH / NT_ARM_HW_BREAK (pure; compiled and tested everywhere).
//
// DBGWCR<n> (watchpoint control): E enable (bit 0), PAC privilege (bits 2:1;
// 1 EL1, 2 EL0, 3 both), LSC load/store (bits 4:3; 1 load, 2 store, 3 both),
// BAS byte-address-select (bits 12:5: one bit per byte of the doubleword at
// DBGWVR, which must be 8-byte aligned), MASK (bits 28:24: watch 2^MASK
// bytes; Linux does not let user space set it).
// DBGBCR<n> (breakpoint control): E (bit 0), PMC (bits 2:1), BAS (bits 8:5;
// 0b1111 for an A64 instruction). Linux's ptrace takes both through one
// layout: BAS at bit 5, type at bits 4:3 (0 for an execute breakpoint).
// dbg_info (first word of struct user_hwdebug_state): debug architecture in
// bits 15:8, number of registers in bits 7:0.
#pragma once

#include <cstdint>
#include <optional>

#include "arch/arch.h"

namespace hwwatch::arch::arm64 {

inline constexpr unsigned kWordSize = 8;         // a watchpoint covers bytes of one doubleword
inline constexpr unsigned kInstructionSize = 4;  // an execute breakpoint covers one A64 insn
inline constexpr unsigned kMaxRegisters = 16;    // architectural limit per kind

enum class Privilege : uint8_t { kEl1 = 1, kEl0 = 2, kAll = 3 };
enum class LoadStore : uint8_t { kNone = 0, kLoad = 1, kStore = 2, kBoth = 3 };

constexpr std::optional<LoadStore> LoadStoreFor(Access a) {
  switch (a) {
    case Access::kRead:
      return LoadStore::kLoad;
    case Access::kWrite:
      return LoadStore::kStore;
    case Access::kReadWrite:
      return LoadStore::kBoth;
    case Access::kExecute:
      break;
  }
  return std::nullopt;
}

// Watchpoint control fields.
struct Wcr {
  bool enabled = false;
  Privilege privilege = Privilege::kEl0;
  LoadStore load_store = LoadStore::kNone;
  uint8_t bas = 0;   // bytes [0, 8) of the aligned doubleword
  uint8_t mask = 0;  // 0 = no address mask (always 0 through Linux)
  friend bool operator==(const Wcr&, const Wcr&) = default;
};

constexpr uint32_t EncodeWcr(const Wcr& w) {
  return (uint32_t{w.mask & 0x1fu} << 24) | (uint32_t{w.bas} << 5) |
         (static_cast<uint32_t>(w.load_store) << 3) | (static_cast<uint32_t>(w.privilege) << 1) |
         (w.enabled ? 1u : 0u);
}

constexpr Wcr DecodeWcr(uint32_t v) {
  Wcr w;
  w.enabled = v & 1;
  w.privilege = static_cast<Privilege>((v >> 1) & 3);
  w.load_store = static_cast<LoadStore>((v >> 3) & 3);
  w.bas = static_cast<uint8_t>((v >> 5) & 0xff);
  w.mask = static_cast<uint8_t>((v >> 24) & 0x1f);
  return w;
}

// Breakpoint control fields.
struct Bcr {
  bool enabled = false;
  Privilege privilege = Privilege::kEl0;
  uint8_t bas = 0xf;  // 4 bits; 0b1111 = the A64 instruction at the address
  friend bool operator==(const Bcr&, const Bcr&) = default;
};

constexpr uint32_t EncodeBcr(const Bcr& b) {
  return (uint32_t{b.bas & 0xfu} << 5) | (static_cast<uint32_t>(b.privilege) << 1) |
         (b.enabled ? 1u : 0u);
}

constexpr Bcr DecodeBcr(uint32_t v) {
  Bcr b;
  b.enabled = v & 1;
  b.privilege = static_cast<Privilege>((v >> 1) & 3);
  b.bas = static_cast<uint8_t>((v >> 5) & 0xf);
  return b;
}

// BAS selecting bytes [offset, offset + length) of a doubleword, or nullopt
// when that range is empty or leaves the doubleword.
constexpr std::optional<uint8_t> BasFor(unsigned offset, unsigned length) {
  if (length == 0 || offset >= kWordSize || length > kWordSize - offset) return std::nullopt;
  return static_cast<uint8_t>(((1u << length) - 1) << offset);
}

// The byte range a BAS selects, when it is one contiguous run (Linux
// accepts only those).
struct ByteRange {
  unsigned offset = 0;
  unsigned length = 0;
  friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

constexpr std::optional<ByteRange> BasRange(uint8_t bas) {
  if (bas == 0) return std::nullopt;
  unsigned offset = 0;
  while (!((bas >> offset) & 1)) ++offset;
  unsigned run = bas >> offset;
  if ((run & (run + 1)) != 0) return std::nullopt;  // not 0b0..01..1
  unsigned length = 0;
  while (run) {
    ++length;
    run >>= 1;
  }
  return ByteRange{offset, length};
}

// Register address (aligned down to the doubleword) and control value of an
// enabled EL0 watchpoint on [address, address + length), which must lie in
// one aligned doubleword.
struct WatchRegister {
  uint64_t address = 0;
  uint32_t control = 0;
};

constexpr std::optional<WatchRegister> EncodeWatch(uint64_t address, unsigned length, Access a) {
  std::optional<LoadStore> ls = LoadStoreFor(a);
  std::optional<uint8_t> bas = BasFor(static_cast<unsigned>(address % kWordSize), length);
  if (!ls || !bas) return std::nullopt;
  return WatchRegister{address & ~uint64_t{kWordSize - 1},
                       EncodeWcr(Wcr{true, Privilege::kEl0, *ls, *bas, 0})};
}

// An enabled EL0 execute breakpoint on the A64 instruction at `address`
// (4-byte aligned).
constexpr std::optional<WatchRegister> EncodeBreak(uint64_t address) {
  if (address % kInstructionSize != 0) return std::nullopt;
  return WatchRegister{address, EncodeBcr(Bcr{true, Privilege::kEl0, 0xf})};
}

struct DbgInfo {
  unsigned debug_arch = 0;  // bits 15:8 (e.g. 6 = ARMv8, 9 = ARMv8.4)
  unsigned count = 0;       // bits 7:0, registers of this kind
  friend bool operator==(const DbgInfo&, const DbgInfo&) = default;
};

// The layout of the kernel's struct user_hwdebug_state (the payload of
// PTRACE_GETREGSET / PTRACE_SETREGSET with NT_ARM_HW_WATCH or
// NT_ARM_HW_BREAK), spelled out so it compiles on every host.
struct HwDebugState {
  uint32_t dbg_info = 0;
  uint32_t pad = 0;
  struct Reg {
    uint64_t addr = 0;
    uint32_t ctrl = 0;
    uint32_t pad = 0;
  } regs[kMaxRegisters];
};
static_assert(sizeof(HwDebugState) == 8 + 16 * kMaxRegisters);

// The regset note types (from <elf.h>; repeated so x86 builds see them).
inline constexpr unsigned kNtArmHwBreak = 0x402;
inline constexpr unsigned kNtArmHwWatch = 0x403;

constexpr DbgInfo ParseDbgInfo(uint32_t dbg_info) {
  return DbgInfo{(dbg_info >> 8) & 0xff, dbg_info & 0xff};
}

}  // namespace hwwatch::arch::arm64
