// The layout shared by the capture program (capture.bpf.c, compiled with
// clang -target bpf) and the daemon that loads it (bpf_capture.cpp): the
// per-watch state the daemon writes into the `watches` map, and the record
// the program writes into the `hits` ring buffer at every trap.
// Plain C, fixed-width fields, no padding holes.
#pragma once

#ifdef __bpf__
typedef unsigned char hw_u8;
typedef unsigned int hw_u32;
typedef unsigned long long hw_u64;
#else
#include <stdint.h>
typedef uint8_t hw_u8;
typedef uint32_t hw_u32;
typedef uint64_t hw_u64;
#endif

// The program wakes the daemon's reader once this much waits in the ring;
// the reader also drains it every HW_DRAIN_MS milliseconds.
#define HW_WAKE_BYTES (32 * 1024)
#define HW_DRAIN_MS 4

// Entries of the program's tables (preallocated: a breakpoint's handler
// runs in exception context): reservations with samples delivery held at
// once, and watched processes.
#define HW_MAX_WATCHES 16384

// Bytes of the watched region the program reads at each trap.
#define HW_CAPTURE_MAX 64

// hw_watch.flags
#define HW_CHANGED 1u     // report only accesses after which the bytes differ
#define HW_CONDITION 2u   // report only when `cond` holds on the value
#define HW_PRE_ACCESS 4u  // the trap comes before the access (arm64): see below
#define HW_EXEC 8u        // hw_record: process `pid` exec'd (no hit)
// hw_record: thread `tid` of a debugger's stop watch `group` trapped with
// that debugger gone
#define HW_TRACER_GONE 16u

// hw_watch.cond_op
enum hw_cond_op { HW_EQ = 0, HW_NE, HW_LT, HW_LE, HW_GT, HW_GE };

// One reservation group's watch, by group id (the attach cookie of its
// events). The daemon writes everything up to `last`; the program updates
// `last` and the counters.
struct hw_watch {
  hw_u64 address;  // first byte of the region
  hw_u32 length;   // bytes read at the trap (<= HW_CAPTURE_MAX, >= 1)
  hw_u32 flags;
  // The condition: (value & mask) OP operand, value being the first
  // `length` bytes as an unsigned little-endian integer (length <= 8).
  hw_u32 cond_op;
  hw_u32 cond_signed;  // compare as signed integers of `length` bytes
  hw_u64 cond_mask;
  hw_u64 cond_operand;
  // Counters, added to atomically by the program.
  hw_u64 emitted;   // records written to the ring
  hw_u64 filtered;  // traps the condition or --changed dropped
  hw_u64 dropped;   // traps whose record did not fit in the ring
  hw_u64 traps;     // arm64: traps seen, which number the records
  // The bytes at the previous trap (at arming, before the first).
  hw_u8 last[HW_CAPTURE_MAX];
};

// A debugger's stop watch (its events raise SIGTRAP for the debugger), by
// group id: the guard program lets a trap through only while the thread's
// tracer is still that debugger (on kernels >= 6.10 its "no" suppresses
// the SIGTRAP, which would kill an untraced thread), and reports the first
// trap without it.
struct hw_guard {
  hw_u32 tracer_tgid;  // the debugger's process, at arming
  hw_u32 pad;
  hw_u64 gone;  // set by the program at the first trap without it
};

// A watched process's inherited events carry no cookie (the kernel does
// not copy it to the child event): they find their group by process and
// breakpoint address.
struct hw_inherited_key {
  hw_u32 tgid;
  hw_u32 pad;
  hw_u64 bp_address;
};

// One trap, as the program saw it: this head, then the bytes at the
// previous trap (old) and at this one (now), HW_SMALL bytes each when the
// watch is at most that long, HW_CAPTURE_MAX otherwise (a record three
// times smaller for the common watch of one word: less for the trapping
// CPU to write). The reader tells the two apart by the record's size.
//
// HW_PRE_ACCESS (arm64, whose data traps come before the access): `now`
// holds the bytes before this access, which are the bytes after the one
// before. The program records every trap, numbered (`seq`), and filters
// nothing: the daemon pairs each record with the next one of its group
// (its new bytes, exact when the numbers follow on), applies --changed
// and --if to that pair, and completes a group's last record by reading
// the bytes once the trap is a few milliseconds old.
struct hw_record {
  hw_u64 group;
  hw_u64 time_ns;  // bpf_ktime_get_ns
  hw_u64 ip;
  hw_u64 address;  // the breakpoint's address (the kernel reports bp_addr)
  hw_u32 tid;
  hw_u32 pid;
  hw_u32 cpu;
  hw_u32 length;   // bytes valid in old and now
  hw_u32 flags;    // HW_PRE_ACCESS: `now` was read before the access
  hw_u32 read_ok;  // 0: the bytes could not be read at the trap
  hw_u64 seq;      // HW_PRE_ACCESS: this trap's number in its group (from 1)
};

#define HW_SMALL 8

struct hw_record_small {
  struct hw_record head;
  hw_u8 old[HW_SMALL];
  hw_u8 now[HW_SMALL];
};

struct hw_record_full {
  struct hw_record head;
  hw_u8 old[HW_CAPTURE_MAX];
  hw_u8 now[HW_CAPTURE_MAX];
};

// The filters, as the program applies them at the trap (and the daemon to
// arm64's pairs).
#define HW_INLINE static inline __attribute__((always_inline))

// The first `len` bytes (at most 8) as an unsigned little-endian integer.
HW_INLINE hw_u64 hw_value_of(const hw_u8* b, hw_u32 len) {
  hw_u64 v = 0;
  for (int i = 7; i >= 0; --i) {
    if (i < (int)len) v = (v << 8) | b[i];
  }
  return v;
}

// --if: whether the watch's condition holds on the bytes `now`.
HW_INLINE int hw_holds(const struct hw_watch* w, const hw_u8* now, hw_u32 len) {
  hw_u64 v = hw_value_of(now, len) & w->cond_mask;
  hw_u64 n = w->cond_operand;  // sign-extended by the daemon when signed
  if (w->cond_signed) {
    if (len < 8) {
      hw_u64 sign = 1ull << (len * 8 - 1);
      v = (v ^ sign) - sign;
    }
    long long a = (long long)v, b = (long long)n;
    switch (w->cond_op) {
      case HW_LT:
        return a < b;
      case HW_LE:
        return a <= b;
      case HW_GT:
        return a > b;
      case HW_GE:
        return a >= b;
    }
  }
  switch (w->cond_op) {
    case HW_EQ:
      return v == n;
    case HW_NE:
      return v != n;
    case HW_LT:
      return v < n;
    case HW_LE:
      return v <= n;
    case HW_GT:
      return v > n;
    case HW_GE:
      return v >= n;
  }
  return 0;
}
