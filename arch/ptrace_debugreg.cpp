#include "arch/ptrace_debugreg.h"

#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <string>

#include "arch/arm64_debugreg.h"
#include "arch/child_process.h"
#include "arch/x86_debugreg.h"

#if defined(__aarch64__)
#include <asm/ptrace.h>
#include <elf.h>
#endif

#ifndef TRAP_HWBKPT
#define TRAP_HWBKPT 4
#endif

namespace hwwatch::arch {
namespace {

[[maybe_unused]] constexpr std::chrono::milliseconds kStepTimeout{1000};

std::string Slot(unsigned slot) { return "slot " + std::to_string(slot); }

#if defined(__x86_64__)

long DebugRegOffset(unsigned index) {
  return static_cast<long>(offsetof(struct user, u_debugreg) +
                           index * sizeof(static_cast<struct user*>(nullptr)->u_debugreg[0]));
}

}  // namespace

Result<uint64_t> x86::PeekDebugReg(pid_t tid, unsigned index) {
  errno = 0;
  long v = ptrace(PTRACE_PEEKUSER, tid, DebugRegOffset(index), nullptr);
  if (v == -1 && errno != 0) return ErrnoError("PTRACE_PEEKUSER DR" + std::to_string(index));
  return static_cast<uint64_t>(v);
}

Status x86::PokeDebugReg(pid_t tid, unsigned index, uint64_t value) {
  if (ptrace(PTRACE_POKEUSER, tid, DebugRegOffset(index), value) != 0) {
    return ErrnoError("PTRACE_POKEUSER DR" + std::to_string(index));
  }
  return OkStatus();
}

namespace {
Result<uint64_t> PeekDr(pid_t tid, unsigned index) { return x86::PeekDebugReg(tid, index); }
Status PokeDr(pid_t tid, unsigned index, uint64_t value) {
  return x86::PokeDebugReg(tid, index, value);
}

#elif defined(__aarch64__)

unsigned NoteFor(SlotType type) {
  return type == SlotType::kData ? arm64::kNtArmHwWatch : arm64::kNtArmHwBreak;
}

const char* BankName(SlotType type) {
  return type == SlotType::kData ? "NT_ARM_HW_WATCH" : "NT_ARM_HW_BREAK";
}

Result<arm64::HwDebugState> GetBank(pid_t tid, SlotType type) {
  arm64::HwDebugState st;
  iovec iov{&st, sizeof st};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(uintptr_t{NoteFor(type)}), &iov) != 0) {
    return ErrnoError(std::string("PTRACE_GETREGSET ") + BankName(type));
  }
  return st;
}

// The kernel writes the bank from entry 0 for as many entries as the
// buffer holds (and refuses entries past the hardware count), so writing
// slot i writes entries 0..i back with their current contents.
Status SetBank(pid_t tid, SlotType type, arm64::HwDebugState& st, unsigned entries) {
  iovec iov{&st, offsetof(arm64::HwDebugState, regs) + entries * sizeof(arm64::HwDebugState::Reg)};
  if (ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(uintptr_t{NoteFor(type)}), &iov) != 0) {
    return ErrnoError(std::string("PTRACE_SETREGSET ") + BankName(type));
  }
  return OkStatus();
}

Status SetControl(pid_t tid, SlotType type, unsigned slot, std::optional<uint64_t> address,
                  uint32_t control) {
  Result<arm64::HwDebugState> st = GetBank(tid, type);
  if (!st.ok()) return st.error();
  if (slot >= arm64::ParseDbgInfo(st->dbg_info).count) {
    return Error{EINVAL, Slot(slot) + " beyond the " + BankName(type) + " bank"};
  }
  if (address) st->regs[slot].addr = *address;
  st->regs[slot].ctrl = control;
  return SetBank(tid, type, *st, slot + 1);
}

uint64_t Distance(uint64_t addr, const BreakpointSpec& s) {
  if (addr < s.address) return s.address - addr;
  if (addr - s.address < s.length) return 0;
  return addr - (s.address + s.length - 1);
}

#endif

}  // namespace

std::array<std::optional<BreakpointSpec>, PtraceDebugRegs::kMaxSlots>& PtraceDebugRegs::Bank(
    SlotType type) {
  return kHostArch == Arch::kX86_64 || type == SlotType::kData ? data_ : inst_;
}

const std::array<std::optional<BreakpointSpec>, PtraceDebugRegs::kMaxSlots>& PtraceDebugRegs::Bank(
    SlotType type) const {
  return kHostArch == Arch::kX86_64 || type == SlotType::kData ? data_ : inst_;
}

const std::optional<BreakpointSpec>& PtraceDebugRegs::armed(unsigned slot, SlotType type) const {
  static const std::optional<BreakpointSpec> kNone;
  return slot < kMaxSlots ? Bank(type)[slot] : kNone;
}

Status PtraceDebugRegs::DisarmAll() {
  Status first;
  for (SlotType type : {SlotType::kData, SlotType::kInst}) {
    for (unsigned i = 0; i < kMaxSlots; ++i) {
      if (!Bank(type)[i]) continue;
      Status s = Disarm(i, type);
      if (!s.ok() && first.ok()) first = s;
    }
  }
  return first;
}

#if defined(__x86_64__)

Result<unsigned> PtraceDebugRegs::SlotCount(SlotType) const { return x86::kSlots; }

Status PtraceDebugRegs::Arm(unsigned slot, const BreakpointSpec& spec) {
  if (slot >= x86::kSlots) return Error{EINVAL, Slot(slot) + ": x86 has DR0-DR3"};
  std::optional<x86::Dr7Slot> want =
      x86::Dr7SlotFor(spec.access, static_cast<unsigned>(spec.length));
  if (!want || spec.length > 8) {
    return Error{EINVAL, "x86 cannot watch " + std::string(AccessName(spec.access)) + " of " +
                             std::to_string(spec.length) + " bytes"};
  }
  if (spec.access != Access::kExecute && spec.address % spec.length != 0) {
    return Error{EINVAL, "x86 data watches must be naturally aligned"};
  }
  Result<uint64_t> dr7 = Dr7();
  if (!dr7.ok()) return dr7.error();
  uint64_t cleared = x86::Dr7WithoutSlot(*dr7, slot);
  // Disable the slot before moving it, so the old condition never applies
  // to the new address (nor the new condition to the old address).
  if (cleared != *dr7) {
    if (Status s = SetDr7(cleared); !s.ok()) return s;
  }
  if (Status s = PokeDr(tid_, slot, spec.address); !s.ok()) return s;
  // The kernel validates alignment and reserves the slot on this write
  // (ENOSPC when the tracee's CPUs are full).
  if (Status s = SetDr7(*x86::Dr7WithSlot(cleared, slot, *want)); !s.ok()) return s;
  data_[slot] = spec;
  return OkStatus();
}

Status PtraceDebugRegs::Disarm(unsigned slot, SlotType) {
  if (slot >= x86::kSlots) return Error{EINVAL, Slot(slot) + ": x86 has DR0-DR3"};
  Result<uint64_t> dr7 = Dr7();
  if (!dr7.ok()) return dr7.error();
  if (Status s = SetDr7(x86::Dr7WithoutSlot(*dr7, slot)); !s.ok()) return s;
  data_[slot].reset();
  return OkStatus();
}

Result<uint64_t> PtraceDebugRegs::Dr7() {
  if (dr7_) return *dr7_;
  Result<uint64_t> dr7 = PeekDr(tid_, 7);
  if (dr7.ok()) dr7_ = *dr7;
  return dr7;
}

Status PtraceDebugRegs::SetDr7(uint64_t value) {
  Status s = PokeDr(tid_, 7, value);
  // After a failed write, read it again rather than guess.
  if (s.ok()) {
    dr7_ = value;
  } else {
    dr7_.reset();
  }
  return s;
}

Result<RawSlot> PtraceDebugRegs::ReadSlot(unsigned slot, SlotType) const {
  if (slot >= x86::kSlots) return Error{EINVAL, Slot(slot) + ": x86 has DR0-DR3"};
  Result<uint64_t> addr = PeekDr(tid_, slot);
  if (!addr.ok()) return addr.error();
  Result<uint64_t> dr7 = PeekDr(tid_, 7);
  if (!dr7.ok()) return dr7.error();
  return RawSlot{*addr, *dr7, x86::Dr7GetSlot(*dr7, slot).enabled()};
}

Result<std::optional<PtraceHit>> PtraceDebugRegs::TakeHit(const siginfo_t&) {
  Result<uint64_t> dr6 = PeekDr(tid_, 6);
  if (!dr6.ok()) return dr6.error();
  // DR6 is sticky: clear it so the next trap reports only its own slot.
  if (Status s = PokeDr(tid_, 6, 0); !s.ok()) return s.error();
  x86::Dr6Status st = x86::DecodeDr6(*dr6);
  for (unsigned i = 0; i < x86::kSlots; ++i) {
    if (st.Hit(i) && data_[i]) {
      return std::optional<PtraceHit>(
          PtraceHit{i, SlotTypeOf(data_[i]->access), data_[i]->address, *dr6});
    }
  }
  return std::optional<PtraceHit>();
}

Result<int> PtraceDebugRegs::StepOver(const PtraceHit&) { return 0; }

#elif defined(__aarch64__)

Result<unsigned> PtraceDebugRegs::SlotCount(SlotType type) const {
  Result<arm64::HwDebugState> st = GetBank(tid_, type);
  if (!st.ok()) return st.error();
  return arm64::ParseDbgInfo(st->dbg_info).count;
}

Status PtraceDebugRegs::Arm(unsigned slot, const BreakpointSpec& spec) {
  const SlotType type = SlotTypeOf(spec.access);
  if (slot >= kMaxSlots) return Error{EINVAL, Slot(slot) + " beyond 16"};
  std::optional<arm64::WatchRegister> reg =
      type == SlotType::kInst
          ? arm64::EncodeBreak(spec.address)
          : (spec.length <= arm64::kWordSize
                 ? arm64::EncodeWatch(spec.address, static_cast<unsigned>(spec.length), spec.access)
                 : std::nullopt);
  if (!reg) {
    return Error{EINVAL, "arm64 cannot watch " + std::string(AccessName(spec.access)) + " of " +
                             std::to_string(spec.length) + " bytes at this address"};
  }
  // Disable first (keeping the old address), then write address and control.
  Result<RawSlot> cur = ReadSlot(slot, type);
  if (!cur.ok()) return cur.error();
  if (cur->enabled) {
    if (Status s = SetControl(tid_, type, slot, std::nullopt,
                              static_cast<uint32_t>(cur->control & ~uint64_t{1}));
        !s.ok()) {
      return s;
    }
  }
  if (Status s = SetControl(tid_, type, slot, reg->address, reg->control); !s.ok()) return s;
  Bank(type)[slot] = spec;
  return OkStatus();
}

Status PtraceDebugRegs::Disarm(unsigned slot, SlotType type) {
  Result<RawSlot> cur = ReadSlot(slot, type);
  if (!cur.ok()) return cur.error();
  if (Status s = SetControl(tid_, type, slot, std::nullopt,
                            static_cast<uint32_t>(cur->control & ~uint64_t{1}));
      !s.ok()) {
    return s;
  }
  if (slot < kMaxSlots) Bank(type)[slot].reset();
  return OkStatus();
}

Result<RawSlot> PtraceDebugRegs::ReadSlot(unsigned slot, SlotType type) const {
  Result<arm64::HwDebugState> st = GetBank(tid_, type);
  if (!st.ok()) return st.error();
  if (slot >= arm64::ParseDbgInfo(st->dbg_info).count) {
    return Error{EINVAL, Slot(slot) + " beyond the " + BankName(type) + " bank"};
  }
  const auto& r = st->regs[slot];
  return RawSlot{r.addr, r.ctrl, (r.ctrl & 1) != 0};
}

Result<std::optional<PtraceHit>> PtraceDebugRegs::TakeHit(const siginfo_t& si) {
  if (si.si_signo != SIGTRAP || si.si_code != TRAP_HWBKPT) return std::optional<PtraceHit>();
  const uint64_t addr = reinterpret_cast<uint64_t>(si.si_addr);
  for (unsigned i = 0; i < kMaxSlots; ++i) {
    if (inst_[i] && inst_[i]->address == addr) {
      return std::optional<PtraceHit>(PtraceHit{i, SlotType::kInst, addr, 0});
    }
  }
  std::optional<unsigned> best;
  for (unsigned i = 0; i < kMaxSlots; ++i) {
    if (data_[i] && (!best || Distance(addr, *data_[i]) < Distance(addr, *data_[*best]))) best = i;
  }
  if (!best) return std::optional<PtraceHit>();
  return std::optional<PtraceHit>(PtraceHit{*best, SlotType::kData, addr, 0});
}

Result<int> PtraceDebugRegs::StepOver(const PtraceHit& hit) {
  const std::optional<BreakpointSpec> spec = armed(hit.slot, hit.type);
  if (!spec) return Error{EINVAL, Slot(hit.slot) + " is not armed"};
  if (Status s = Disarm(hit.slot, hit.type); !s.ok()) return s.error();
  int pending = 0;
  if (ptrace(PTRACE_SINGLESTEP, tid_, nullptr, nullptr) != 0) {
    Error e = ErrnoError("PTRACE_SINGLESTEP");
    (void)Arm(hit.slot, *spec);
    return e;
  }
  Result<int> status = WaitForStateChange(tid_, kStepTimeout);
  if (!status.ok()) return status.error();
  if (!WIFSTOPPED(*status)) return Error{ESRCH, "tracee ended during the step-over"};
  if (WSTOPSIG(*status) != SIGTRAP) pending = WSTOPSIG(*status);
  if (Status s = Arm(hit.slot, *spec); !s.ok()) return s.error();
  return pending;
}

#else

Result<unsigned> PtraceDebugRegs::SlotCount(SlotType) const {
  return Error{EOPNOTSUPP, "no ptrace debug registers on this architecture"};
}
Status PtraceDebugRegs::Arm(unsigned, const BreakpointSpec&) {
  return Error{EOPNOTSUPP, "no ptrace debug registers on this architecture"};
}
Status PtraceDebugRegs::Disarm(unsigned, SlotType) {
  return Error{EOPNOTSUPP, "no ptrace debug registers on this architecture"};
}
Result<RawSlot> PtraceDebugRegs::ReadSlot(unsigned, SlotType) const {
  return Error{EOPNOTSUPP, "no ptrace debug registers on this architecture"};
}
Result<std::optional<PtraceHit>> PtraceDebugRegs::TakeHit(const siginfo_t&) {
  return Error{EOPNOTSUPP, "no ptrace debug registers on this architecture"};
}
Result<int> PtraceDebugRegs::StepOver(const PtraceHit&) { return 0; }

#endif

Result<uint64_t> ReadInstructionPointer(pid_t tid) {
#if defined(__x86_64__)
  user_regs_struct regs{};
  if (ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) return ErrnoError("PTRACE_GETREGS");
  return uint64_t{regs.rip};
#elif defined(__aarch64__)
  user_pt_regs regs{};
  iovec iov{&regs, sizeof regs};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(uintptr_t{NT_PRSTATUS}), &iov) != 0) {
    return ErrnoError("PTRACE_GETREGSET NT_PRSTATUS");
  }
  return uint64_t{regs.pc};
#else
  (void)tid;
  return Error{EOPNOTSUPP, "no instruction pointer read on this architecture"};
#endif
}

}  // namespace hwwatch::arch
