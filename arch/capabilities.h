// Capability discovery: what debug registers this host offers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "arch/result.h"

namespace hwwatch::arch {

struct HostCapabilities {
  Arch arch = Arch::kUnknown;
  std::string kernel_release;  // uname -r
  unsigned cpus = 0;           // possible CPUs
  std::vector<SlotPool> pools;
  std::vector<AccessRule> rules;
  unsigned debug_arch = 0;  // arm64 dbg_info debug architecture; 0 on x86
  // Empty when discovery succeeded; otherwise why it did not.
  std::string error;

  // The pool accounting a slot type (a mixed pool serves both).
  const SlotPool* PoolFor(SlotType t) const;
};

// The x86-64 facts: one mixed pool of 4 registers (DR0-DR3) per CPU;
// data watches of 1, 2, 4 or 8 naturally aligned bytes, write or read/write
// (no read-only watch); execute breakpoints on one instruction.
HostCapabilities X86_64Capabilities(unsigned cpus);

// The arm64 facts from the dbg_info words of NT_ARM_HW_WATCH and
// NT_ARM_HW_BREAK: separate watchpoint (data) and breakpoint (instruction)
// pools of the counts in bits 7:0; data watches of any 1..8 contiguous
// bytes inside one aligned 8-byte word, read, write or both; execute
// breakpoints on one 4-byte instruction. A bank reporting 0 registers gives
// no pool. debug_arch comes from bits 15:8 of the watchpoint word.
HostCapabilities Aarch64Capabilities(unsigned cpus, uint32_t watch_dbg_info,
                                     uint32_t break_dbg_info);

// The raw dbg_info words, read with PTRACE_GETREGSET from a helper child
// (fork, PTRACE_TRACEME, SIGSTOP; always killed and reaped; bounded by one
// second). EOPNOTSUPP on anything but aarch64.
struct Arm64DbgInfoWords {
  uint32_t watch = 0;
  uint32_t brk = 0;
};
Result<Arm64DbgInfoWords> ProbeArm64DbgInfo();

// Possible CPUs as the kernel lists them in /sys/devices/system/cpu/possible
// (e.g. "0-255"); returns 0 when unreadable.
unsigned PossibleCpus();

// Parses a kernel CPU list such as "0-3,8,10-11" and returns the highest
// CPU number + 1, or 0 when malformed.
unsigned ParseCpuListCount(const std::string& list);

// What this host offers. On x86-64 the facts are fixed by the architecture;
// on arm64 they are read from the kernel (NT_ARM_HW_WATCH / NT_ARM_HW_BREAK).
HostCapabilities DiscoverHost();

}  // namespace hwwatch::arch
