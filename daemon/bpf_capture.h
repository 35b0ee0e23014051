// Capture at the trap: the BPF program of daemon/bpf/capture.bpf.c,
// loaded once per daemon, attached to every breakpoint event of the BPF
// samples backend: through a perf link whose cookie is the reservation
// group, or, for a process whose events are mapped, on the event itself.
// At each trap it reads the watched bytes, applies the group's
// filters and writes a record into one BPF ring buffer; this class's
// thread drains that ring in batches and hands the hits to the HitSink,
// with the bytes before and after the access.
//
// A process watch's events, and the copies the kernel makes of them in
// threads created after arming, carry no cookie: they find their group
// through the (process, breakpoint address) map that AddWatch fills.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "arch/result.h"
#include "arch/scoped_fd.h"
#include "daemon/bpf/capture_abi.h"
#include "daemon/hit_sink.h"
#include "daemon/thread_annotations.h"
#include "daemon/types.h"

struct hwwatch_capture;
struct ring_buffer;
struct bpf_link;

namespace hwwatch::daemon {

struct CaptureOptions {
  // false: never try BPF (the perf ring path), as where it cannot load.
  bool bpf = true;
  // The BPF ring's size (rounded up to a power of two pages by the
  // kernel's rules; 256 KiB to 1 GiB).
  uint64_t ring_bytes = uint64_t{8} << 20;
  // Reservations with samples delivery held at once (the program's
  // preallocated tables: about 200 bytes of kernel memory each).
  uint32_t max_watches = HW_MAX_WATCHES;
};

class BpfCapture {
 public:
  // Loads the program and starts draining; null with `why` set when BPF
  // cannot be used here (no kernel support, no CAP_BPF, a seccomp filter).
  static std::unique_ptr<BpfCapture> Load(HitSink& sink, const CaptureOptions& options,
                                          std::string& why);
  ~BpfCapture();
  BpfCapture(const BpfCapture&) = delete;
  BpfCapture& operator=(const BpfCapture&) = delete;

  uint64_t ring_bytes() const { return ring_bytes_; }

  // The group's state (counted: one AddWatch per arm). With `inherit`,
  // the first one also maps the process's inherited events to the group,
  // unless another group holds one of its (process, address) keys: then
  // the group's events must not inherit. Sets `inherits` to the group's
  // answer. `tgid` is the watched task's process (0: a CPU target): its
  // exec is reported as Execed(group, tgid).
  void AddWatch(uint64_t group, const WatchSpec& watch, pid_t tgid, bool inherit, bool& inherits)
      EXCLUDES(mu_);
  // At the group's first arm, once its events are opened and attached and
  // before they are enabled: writes its watch to the program's table, with
  // the bytes of `pid` now (a thread target; 0: none) as the first hit's
  // "old" value. Later arms of the group leave it. A full table fails
  // with E2BIG.
  std::optional<arch::Error> Prime(uint64_t group, const WatchSpec& watch, pid_t pid) EXCLUDES(mu_);
  // A modify: the new region and filters, keeping the counters.
  void UpdateWatch(uint64_t group, const WatchSpec& watch, pid_t pid) EXCLUDES(mu_);
  void RemoveWatch(uint64_t group) EXCLUDES(mu_);

  // Attaches the program to an opened event with `group` as its cookie.
  // The link holds the event: closing the link (and the event) frees the
  // slot.
  arch::Result<arch::ScopedFd> Attach(int perf_fd, uint64_t group);
  // An event of a group whose process's events are mapped (AddWatch set
  // `inherits`): the program goes on the event itself, with no cookie and
  // no link, and finds the group by (process, register address) as it does
  // for the copies the kernel makes at clone. One descriptor per event,
  // and no link to create and close. It goes when the event closes.
  arch::Status AttachMapped(int perf_fd);
  // Before a modify moves a mapped group's events: maps the new watch's
  // register addresses too, or, where another group holds one, maps
  // nothing and says which address (the mapped events would lose their
  // group). UpdateWatch then drops the old addresses.
  std::optional<uint64_t> MapMoved(uint64_t group, const WatchSpec& to) EXCLUDES(mu_);
  // A modify that failed after MapMoved: unmaps what it added.
  void UnmapMoved(uint64_t group, const WatchSpec& to) EXCLUDES(mu_);

  // A debugger's stop events: attaches the guard program to `perf_fd`
  // (cookie: the group), which lets its traps through only while the
  // thread is traced by `tracer_tgid` (counted per group, like AddWatch).
  arch::Result<arch::ScopedFd> Guard(int perf_fd, uint64_t group, pid_t tracer_tgid) EXCLUDES(mu_);
  void Unguard(uint64_t group) EXCLUDES(mu_);
  // Whether the kernel suppresses a trap's SIGTRAP when the guard says no
  // (Linux 6.10 and later); older ones send it anyway.
  static bool GuardSuppresses();

  struct Counts {
    uint64_t emitted = 0;   // records written to the ring
    uint64_t filtered = 0;  // dropped by changed / condition
    uint64_t dropped = 0;   // did not fit in the ring
  };
  Counts Read(uint64_t group) EXCLUDES(mu_);

 private:
  BpfCapture(HitSink& sink, hwwatch_capture* skel, uint64_t ring_bytes, uint32_t max_watches);
  void Loop() EXCLUDES(mu_);
  static int OnRecord(void* self, void* data, size_t size);
  // arm64: delivers the waiting records old enough (or all).
  void DeliverTails(bool all) EXCLUDES(mu_);
  // UpdateWatch's work, returning the old watch's last hit (arm64).
  std::optional<RawHit> Rewatch(uint64_t group, const WatchSpec& watch, pid_t pid) REQUIRES(mu_);
  // The inherited map: events at `addresses` in threads of `tgid` are
  // `group`'s. Where another group holds a key: nothing added, and the
  // address of that key.
  std::optional<uint64_t> MapInherited(pid_t tgid, const std::vector<uint64_t>& addresses,
                                       uint64_t group);
  void UnmapInherited(pid_t tgid, const std::vector<uint64_t>& addresses);

  HitSink& sink_;
  hwwatch_capture* skel_;
  ring_buffer* ring_ = nullptr;
  const uint64_t ring_bytes_;
  const uint32_t max_watches_;
  int watches_fd_ = -1;
  int inherited_fd_ = -1;
  arch::ScopedFd epoll_;
  arch::ScopedFd wake_;
  Mutex mu_;
  // Groups per process. The watched_tgids map holds the processes with
  // any, and up to kIdleProcesses that had some lately (oldest dropped
  // first; all of them when the map is full).
  void CountProcess(pid_t tgid, int delta) REQUIRES(mu_);
  void DropIdle(size_t n) REQUIRES(mu_);
  static constexpr size_t kIdleProcesses = 64;
  struct ProcessState {
    uint32_t groups = 0;
    bool in_map = false;  // in watched_tgids
    bool queued = false;  // in idle_
  };
  std::unordered_map<pid_t, ProcessState> process_groups_ GUARDED_BY(mu_);
  std::deque<pid_t> idle_ GUARDED_BY(mu_);  // went idle, oldest first

  struct GroupState {
    unsigned refs = 0;
    pid_t tgid = 0;                   // the watched process (0: a CPU)
    uint64_t address = 0;             // the watched region's first byte
    std::vector<uint64_t> inherited;  // inherits: its registers' addresses
    bool inherits = false;
    bool in_table = false;  // Prime() wrote it to the program's table
    // arm64 (HW_PRE_ACCESS, see capture_abi.h): the filters the daemon
    // applies to each pair, the group's last record waiting for the next
    // one, and the pairs filtered out.
    hw_watch filter{};
    std::optional<RawHit> pending;
    uint64_t pending_seq = 0;
    pid_t pending_pid = 0;
    uint64_t pending_trap_ns = 0;  // its trap's time (CLOCK_MONOTONIC)
    uint64_t filtered = 0;
  };
  // arm64: completes `g`'s waiting record with the bytes after its access
  // (`after`: read at the next trap, or later when `at_trap` is false) and
  // applies the filters: the hit to deliver, if any.
  static std::optional<RawHit> Complete(GroupState& g, std::optional<std::string> after,
                                        bool at_trap);
  // arm64: the waiting records (those a few milliseconds old with no
  // later trap, or all), completed with the bytes read now, to deliver.
  std::vector<RawHit> TakeTails(bool all) REQUIRES(mu_);
  // arm64: the group's waiting record, completed with the bytes now.
  static std::optional<RawHit> TakeTail(GroupState& g);
  std::unordered_map<uint64_t, GroupState> groups_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, unsigned> guarded_ GUARDED_BY(mu_);  // group: links
  int guards_fd_ = -1;
  bpf_link* exec_link_ = nullptr;  // the exec tracepoint's program
  int tgids_fd_ = -1;
  std::thread thread_;
};

}  // namespace hwwatch::daemon
