// The capture program: attached to every breakpoint event of hwwatchd's
// BPF capture path (through a perf link whose cookie is the reservation
// group, or, for a process watch, PERF_EVENT_IOC_SET_BPF with no cookie:
// the `inherited` map names the group), it runs at the trap, in the context of
// the thread that hit. It reads the watched bytes there, applies the
// watch's filters (--changed, --if) and writes one record per reported
// trap into the `hits` ring buffer, which the daemon drains in batches.
// Returning 0 tells perf not to write its own sample (there is no perf
// ring). Layout shared with the daemon: capture_abi.h.
// The helpers need the kernel's types first.
// clang-format off
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
// clang-format on

#include "capture_abi.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 22);  // the daemon sets the size before loading
} hits SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, HW_MAX_WATCHES);
  __type(key, hw_u64);  // group id
  __type(value, struct hw_watch);
} watches SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, HW_MAX_WATCHES);
  __type(key, struct hw_inherited_key);
  __type(value, hw_u64);  // group id
} inherited SEC(".maps");

// Processes with a watched thread, and how many groups watch them.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, HW_MAX_WATCHES);
  __type(key, hw_u32);    // tgid
  __type(value, hw_u32);  // groups
} watched_tgids SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, HW_MAX_WATCHES);
  __type(key, hw_u64);  // group id
  __type(value, struct hw_guard);
} guards SEC(".maps");

// The fields of the kernel's task_struct the guard reads, located in the
// running kernel's BTF when the program loads (CO-RE).
struct task_struct {
  unsigned int ptrace;
  struct task_struct* parent;  // the tracer, while traced
  int tgid;
} __attribute__((preserve_access_index));

// Traps of events whose group the maps do not know (being torn down).
hw_u64 unknown_traps = 0;

static __always_inline void fill_head(struct hw_record* h, struct bpf_perf_event_data* ctx,
                                      hw_u64 group, hw_u32 len, int read_ok, hw_u64 seq) {
  hw_u64 pid_tgid = bpf_get_current_pid_tgid();
  h->group = group;
  h->time_ns = bpf_ktime_get_ns();
#if defined(__TARGET_ARCH_arm64)
  h->ip = ctx->regs.pc;
  h->flags = HW_PRE_ACCESS;
#else
  h->ip = ctx->regs.rip;
  h->flags = 0;
#endif
  h->address = ctx->addr;
  h->tid = (hw_u32)pid_tgid;
  h->pid = (hw_u32)(pid_tgid >> 32);
  h->cpu = bpf_get_smp_processor_id();
  h->length = len;
  h->read_ok = read_ok;
  h->seq = seq;
}

// Waking the reader costs the trapping CPU an interrupt (irq_work): wake
// it only when this record takes what waits across HW_WAKE_BYTES, once per
// crossing, not at every trap until the reader runs (the reader also looks
// every HW_DRAIN_MS). `waiting` includes this reserved record.
static __always_inline void submit(void* r, hw_u64 size) {
  hw_u64 waiting = bpf_ringbuf_query(&hits, BPF_RB_AVAIL_DATA);
  int crossed = waiting >= HW_WAKE_BYTES && waiting < HW_WAKE_BYTES + size + 8;
  bpf_ringbuf_submit(r, crossed ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

// Writes one record of TYPE, with N bytes of old and now; 0 if the ring is
// full. (A statement expression: the verifier needs each reserve's size
// as a constant.)
#define EMIT(TYPE, N)                                        \
  ({                                                         \
    TYPE* r_ = bpf_ringbuf_reserve(&hits, sizeof(TYPE), 0);  \
    if (r_) {                                                \
      fill_head(&r_->head, ctx, group, len, read_ok, seq);   \
      __builtin_memcpy(r_->old, w->last, N);                 \
      __builtin_memcpy(r_->now, now, N);                     \
      submit(r_, sizeof(TYPE));                              \
    }                                                        \
    r_ != 0;                                                 \
  })

SEC("perf_event")
int capture(struct bpf_perf_event_data* ctx) {
  hw_u64 group = bpf_get_attach_cookie(ctx);
  if (group == 0) {
    // An event of a process watch, or its copy the kernel made in a new
    // thread of that process.
    struct hw_inherited_key key = {};
    key.tgid = (hw_u32)(bpf_get_current_pid_tgid() >> 32);
    key.bp_address = ctx->addr;
    hw_u64* g = bpf_map_lookup_elem(&inherited, &key);
    if (!g) {
      __sync_fetch_and_add(&unknown_traps, 1);
      return 0;
    }
    group = *g;
  }
  struct hw_watch* w = bpf_map_lookup_elem(&watches, &group);
  if (!w) {
    __sync_fetch_and_add(&unknown_traps, 1);
    return 0;
  }

  hw_u8 now[HW_CAPTURE_MAX] = {};
  hw_u32 len = w->length;
  if (len > HW_CAPTURE_MAX) len = HW_CAPTURE_MAX;
  if (len == 0) len = 1;
  int read_ok = bpf_probe_read_user(now, len, (const void*)w->address) == 0;
  hw_u64 seq = 0;
#if defined(__TARGET_ARCH_arm64)
  // Before the access: numbered for the daemon, which pairs and filters
  // (it never sets HW_CHANGED or HW_CONDITION here).
  seq = __sync_fetch_and_add(&w->traps, 1) + 1;
#endif

  if (read_ok && (w->flags & HW_CHANGED)) {
    int same = 1;
    for (int i = 0; i < HW_CAPTURE_MAX; ++i) {
      if (i >= (int)len) break;
      if (now[i] != w->last[i]) same = 0;
    }
    if (same) {
      __sync_fetch_and_add(&w->filtered, 1);
      return 0;
    }
  }
  if (read_ok && (w->flags & HW_CONDITION) && !hw_holds(w, now, len)) {
    // The value still changed: --changed compares with it next time.
    __builtin_memcpy(w->last, now, HW_CAPTURE_MAX);
    __sync_fetch_and_add(&w->filtered, 1);
    return 0;
  }

  int ok = len <= HW_SMALL ? EMIT(struct hw_record_small, HW_SMALL)
                           : EMIT(struct hw_record_full, HW_CAPTURE_MAX);
  if (read_ok) __builtin_memcpy(w->last, now, HW_CAPTURE_MAX);
  if (!ok) {
    __sync_fetch_and_add(&w->dropped, 1);
    return 0;
  }
  __sync_fetch_and_add(&w->emitted, 1);
  return 0;
}

// Attached to a debugger's stop events (cookie: the group): returns 1,
// and the trap raises its SIGTRAP for the debugger, while the thread is
// traced by the debugger it was armed for; else 0, which kernels >= 6.10
// take as "no SIGTRAP" (older ones send it anyway), and the first such
// trap tells the daemon, which disarms the watch.
SEC("perf_event")
int guard(struct bpf_perf_event_data* ctx) {
  hw_u64 group = bpf_get_attach_cookie(ctx);
  struct hw_guard* g = bpf_map_lookup_elem(&guards, &group);
  if (!g) return 1;
  struct task_struct* task = (struct task_struct*)bpf_get_current_task();
  unsigned int traced = BPF_CORE_READ(task, ptrace);
  hw_u32 tracer = traced ? (hw_u32)BPF_CORE_READ(task, parent, tgid) : 0;
  if (traced && tracer == g->tracer_tgid) return 1;
  if (__sync_val_compare_and_swap(&g->gone, 0, 1) == 0) {
    struct hw_record_small* r = bpf_ringbuf_reserve(&hits, sizeof *r, 0);
    if (r) {
      __builtin_memset(r, 0, sizeof *r);
      hw_u64 pid_tgid = bpf_get_current_pid_tgid();
      r->head.flags = HW_TRACER_GONE;
      r->head.group = group;
      r->head.tid = (hw_u32)pid_tgid;
      r->head.pid = (hw_u32)(pid_tgid >> 32);
      r->head.time_ns = bpf_ktime_get_ns();
      bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
    }
  }
  return 0;
}

// A watched process exec'd: its old address space, and so the watch, is
// gone (the events have remove_on_exec). The daemon ends its reservations.
SEC("raw_tp/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args* ctx) {
  hw_u32 tgid = (hw_u32)(bpf_get_current_pid_tgid() >> 32);
  if (!bpf_map_lookup_elem(&watched_tgids, &tgid)) return 0;
  struct hw_record_small* r = bpf_ringbuf_reserve(&hits, sizeof *r, 0);
  if (!r) return 0;
  __builtin_memset(r, 0, sizeof *r);
  r->head.flags = HW_EXEC;
  r->head.pid = tgid;
  r->head.tid = (hw_u32)bpf_get_current_pid_tgid();
  r->head.time_ns = bpf_ktime_get_ns();
  bpf_ringbuf_submit(r, 0);
  return 0;
}
