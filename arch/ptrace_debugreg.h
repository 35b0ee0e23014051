// The ptrace backend: hardware debug registers of one ptrace-stopped
// tracee thread.
//
// x86_64: DR0-DR3 (addresses), DR6 (status) and DR7 (control) through
// PTRACE_PEEKUSER/POKEUSER at offsetof(struct user, u_debugreg[i]). The
// kernel turns every slot into a perf breakpoint owned by the tracee (so the
// slot is accounted like any other) and validates alignment on the DR7 write.
// arm64: the watchpoint and breakpoint banks through PTRACE_GETREGSET /
// SETREGSET with NT_ARM_HW_WATCH / NT_ARM_HW_BREAK.
//
// Registers written this way OUTLIVE the tracer (checked on both arches): a
// tracer must Disarm() what it armed before detaching or the target is killed
// by SIGTRAP at its next matching access.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>

#include "arch/arch.h"
#include "arch/result.h"

namespace hwwatch::arch {

// One slot as the hardware interface holds it (for read-back checks).
struct RawSlot {
  uint64_t address = 0;  // x86: DRi; arm64: the bank entry's addr
  uint64_t control = 0;  // x86: all of DR7; arm64: the entry's ctrl
  bool enabled = false;
};

// Which armed slot a SIGTRAP belongs to.
struct PtraceHit {
  unsigned slot = 0;
  SlotType type = SlotType::kData;
  // arm64: si_addr (the data address accessed, or the pc for a breakpoint).
  // x86: the armed address of the slot (the hardware does not report the
  // data address).
  uint64_t address = 0;
  uint64_t dr6 = 0;  // x86: the raw DR6 read (then cleared); 0 on arm64
};

class PtraceDebugRegs {
 public:
  // `tid` must be a thread this process traces; every call needs it stopped.
  explicit PtraceDebugRegs(pid_t tid) : tid_(tid) {}

  pid_t tid() const { return tid_; }

  // Slots of the bank serving `type`: 4 on x86 (one mixed bank); on arm64
  // the count in dbg_info of NT_ARM_HW_WATCH (kData) or NT_ARM_HW_BREAK.
  Result<unsigned> SlotCount(SlotType type) const;

  // Programs slot `slot` of the bank for SlotTypeOf(spec.access) with ONE
  // register's worth (see arch/region.h): x86 a naturally aligned 1/2/4/8
  // byte block (execute: the instruction's address, length ignored); arm64
  // bytes inside one aligned doubleword (execute: 4-aligned). The slot is
  // disabled before its address changes. Errors: EINVAL for what the
  // hardware cannot express or the kernel refuses, ENOSPC when the tracee's
  // CPUs have no free slot, ESRCH when the tracee is not stopped.
  // arm64: the kernel writes a regset from entry 0, so arming slot i
  // rewrites entries 0..i with their current contents (as GDB does).
  Status Arm(unsigned slot, const BreakpointSpec& spec);

  // Disables slot `slot` of the bank for `type` (address left in place).
  Status Disarm(unsigned slot, SlotType type);
  // Disables every slot this object armed.
  Status DisarmAll();

  // What the hardware interface holds for the slot.
  Result<RawSlot> ReadSlot(unsigned slot, SlotType type) const;

  // After a SIGTRAP stop (siginfo from PTRACE_GETSIGINFO): the armed slot
  // that fired, or nullopt when the trap is not one of ours. x86 reads DR6,
  // clears it and picks the lowest armed slot with its B bit; arm64 matches
  // si_addr: a breakpoint by its address, a watchpoint as the armed range
  // nearest to si_addr (an access may start below the watched bytes).
  Result<std::optional<PtraceHit>> TakeHit(const siginfo_t& si);

  // arm64 traps BEFORE the access (or instruction): disable the slot,
  // PTRACE_SINGLESTEP, wait for the step's SIGTRAP (bounded), re-enable.
  // Returns 0, or the signal number of a different stop that arrived
  // instead (the caller should deliver it on the next continue; the slot is
  // re-enabled either way). x86 traps after the access: a no-op returning 0.
  Result<int> StepOver(const PtraceHit& hit);

  // What this object armed (nullopt when the slot is free).
  const std::optional<BreakpointSpec>& armed(unsigned slot, SlotType type) const;

 private:
  static constexpr unsigned kMaxSlots = 16;
  std::array<std::optional<BreakpointSpec>, kMaxSlots>& Bank(SlotType type);
  const std::array<std::optional<BreakpointSpec>, kMaxSlots>& Bank(SlotType type) const;

  pid_t tid_;
  // x86 has one bank: everything lives in data_.
  std::array<std::optional<BreakpointSpec>, kMaxSlots> data_;
  std::array<std::optional<BreakpointSpec>, kMaxSlots> inst_;
  // x86: DR7 as last read or written. Only the tracer writes a tracee's
  // debug registers, so it is read from the thread once (and the kernel
  // clears them only at exec and for a new thread, which end or start a
  // PtraceDebugRegs).
  std::optional<uint64_t> dr7_;
  Result<uint64_t> Dr7();
  Status SetDr7(uint64_t value);
};

// The instruction pointer of a stopped tracee (x86_64: rip from
// PTRACE_GETREGS; arm64: pc from the NT_PRSTATUS regset). EOPNOTSUPP on
// other architectures.
Result<uint64_t> ReadInstructionPointer(pid_t tid);

#if defined(__x86_64__)
namespace x86 {
// Raw access to DR0-DR7 of a stopped tracee (index 0-3, 6 or 7). Linux
// shows DR6 in the architectural polarity and keeps it until written.
Result<uint64_t> PeekDebugReg(pid_t tid, unsigned index);
Status PokeDebugReg(pid_t tid, unsigned index, uint64_t value);
}  // namespace x86
#endif

}  // namespace hwwatch::arch
