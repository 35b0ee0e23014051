#include "daemon/bpf_capture.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "arch/arch.h"
#include "daemon/bpf/capture_skel.h"
#include "daemon/procfs.h"

namespace hwwatch::daemon {

namespace {

// libbpf's own messages go to the daemon's log at debug level (a failed
// load explains itself there; the warning names the errno).
int LogLibbpf(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, args);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  spdlog::debug("libbpf: {}", line);
  return 0;
}

// arm64: a group's last record is completed by reading the bytes once its
// trap is this old and no later one came (the thread stepped over its
// access long before).
constexpr std::chrono::milliseconds kTailAge{10};
constexpr std::chrono::milliseconds kTailMaxAge{200};

// The program's copy of a watch: on arm64 it filters nothing (the daemon
// filters each pair of records).
hw_watch ForProgram(hw_watch w) {
  if (arch::kDataTrapBeforeAccess) w.flags &= ~(HW_CHANGED | HW_CONDITION);
  return w;
}

uint32_t CondOp(Condition::Op op) {
  switch (op) {
    case Condition::Op::kEq:
      return HW_EQ;
    case Condition::Op::kNe:
      return HW_NE;
    case Condition::Op::kLt:
      return HW_LT;
    case Condition::Op::kLe:
      return HW_LE;
    case Condition::Op::kGt:
      return HW_GT;
    case Condition::Op::kGe:
      return HW_GE;
  }
  return HW_EQ;
}

// The map value for a watch (counters zero, `last` from the target now).
hw_watch WatchValue(const WatchSpec& watch, pid_t pid) {
  hw_watch w;
  std::memset(&w, 0, sizeof w);
  w.address = watch.region.address;
  w.length = static_cast<uint32_t>(std::min<uint64_t>(watch.region.length, HW_CAPTURE_MAX));
  if (watch.changed) w.flags |= HW_CHANGED;
  if (watch.condition) {
    w.flags |= HW_CONDITION;
    w.cond_op = CondOp(watch.condition->op);
    w.cond_signed = watch.condition->is_signed ? 1 : 0;
    w.cond_mask = watch.condition->mask;
    w.cond_operand = watch.condition->operand;
  }
  if (pid > 0) {
    if (auto now = procfs::ReadMemory(pid, w.address, w.length)) {
      std::memcpy(w.last, now->data(), std::min<size_t>(now->size(), sizeof w.last));
    }
  }
  return w;
}

}  // namespace

std::unique_ptr<BpfCapture> BpfCapture::Load(HitSink& sink, const CaptureOptions& options,
                                             std::string& why) {
  libbpf_set_print(LogLibbpf);
  // The ring's size: a power of two multiple of the page size.
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t size = page;
  while (size < options.ring_bytes && size < (uint64_t{1} << 30)) size <<= 1;
  hwwatch_capture* skel = hwwatch_capture::open();
  if (skel == nullptr) {
    why = std::string("cannot open the capture program: ") + std::strerror(errno);
    return nullptr;
  }
  bpf_map__set_max_entries(skel->maps.hits, static_cast<uint32_t>(size));
  const uint32_t watches = std::max<uint32_t>(options.max_watches, 1);
  bpf_map__set_max_entries(skel->maps.watches, watches);
  bpf_map__set_max_entries(skel->maps.inherited, watches);
  bpf_map__set_max_entries(skel->maps.watched_tgids, watches);
  bpf_map__set_max_entries(skel->maps.guards, watches);
  if (int err = hwwatch_capture::load(skel); err != 0) {
    why = std::string("the kernel refused the capture program (bpf: ") + std::strerror(-err) +
          "): no BPF support, no CAP_BPF, or a seccomp filter";
    hwwatch_capture::destroy(skel);
    return nullptr;
  }
  std::unique_ptr<BpfCapture> c(new BpfCapture(sink, skel, size, watches));
  if (c->ring_ == nullptr) {
    why = std::string("cannot map the capture ring: ") + std::strerror(errno);
    return nullptr;
  }
  c->exec_link_ = bpf_program__attach(skel->progs.on_exec);
  if (c->exec_link_ == nullptr) {
    why = std::string("cannot attach to the sched_process_exec raw tracepoint: ") +
          std::strerror(errno);
    return nullptr;
  }
  return c;
}

BpfCapture::BpfCapture(HitSink& sink, hwwatch_capture* skel, uint64_t ring_bytes,
                       uint32_t max_watches)
    : sink_(sink),
      skel_(skel),
      ring_bytes_(ring_bytes),
      max_watches_(max_watches),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  watches_fd_ = bpf_map__fd(skel_->maps.watches);
  tgids_fd_ = bpf_map__fd(skel_->maps.watched_tgids);
  inherited_fd_ = bpf_map__fd(skel_->maps.inherited);
  guards_fd_ = bpf_map__fd(skel_->maps.guards);
  ring_ = ring_buffer__new(bpf_map__fd(skel_->maps.hits), &BpfCapture::OnRecord, this, nullptr);
  if (ring_ == nullptr) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = ring_buffer__epoll_fd(ring_);
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ev.data.fd, &ev);
  ev.data.fd = wake_.get();
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { Loop(); });
}

BpfCapture::~BpfCapture() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof one);
    thread_.join();
  }
  if (ring_ != nullptr) ring_buffer__free(ring_);
  if (exec_link_ != nullptr) bpf_link__destroy(exec_link_);
  hwwatch_capture::destroy(skel_);
}

static std::vector<uint64_t> RegisterAddresses(const WatchSpec& watch) {
  std::vector<uint64_t> out;
  for (const auto& reg : watch.cover.registers) out.push_back(reg.address);
  return out;
}

// The addresses of `from` that `in` lacks.
static std::vector<uint64_t> Missing(const std::vector<uint64_t>& from,
                                     const std::vector<uint64_t>& in) {
  std::vector<uint64_t> out;
  for (uint64_t a : from) {
    if (std::find(in.begin(), in.end(), a) == in.end()) out.push_back(a);
  }
  return out;
}

void BpfCapture::CountProcess(pid_t tgid, int delta) {
  if (tgid <= 0) return;
  // The program only asks whether a process is watched. Its entry goes in
  // with the process's first group and stays a while after the last one
  // leaves (an exec then finds no group here and is ignored): a client
  // that reserves and releases on one process again and again does not
  // pay two map writes each time.
  auto it = process_groups_.find(tgid);
  if (delta < 0) {
    if (it == process_groups_.end() || it->second.groups == 0) return;
    if (--it->second.groups == 0 && !it->second.queued) {
      it->second.queued = true;
      idle_.push_back(tgid);
      if (idle_.size() > kIdleProcesses) DropIdle(idle_.size() - kIdleProcesses);
    }
    return;
  }
  if (it == process_groups_.end()) it = process_groups_.emplace(tgid, ProcessState{}).first;
  ++it->second.groups;
  if (it->second.in_map) return;
  const uint32_t key = static_cast<uint32_t>(tgid);
  const uint32_t watched = 1;
  int rc = bpf_map_update_elem(tgids_fd_, &key, &watched, BPF_ANY);
  if (rc != 0 && errno == E2BIG) {  // room taken by idle ones
    DropIdle(idle_.size());
    rc = bpf_map_update_elem(tgids_fd_, &key, &watched, BPF_ANY);
  }
  if (rc != 0) {
    spdlog::warn("process {}: its exec will not be seen at once (watched_tgids: {})", tgid,
                 std::strerror(errno));
    return;  // tried again with its next group
  }
  it->second.in_map = true;
}

void BpfCapture::DropIdle(size_t n) {
  for (; n > 0 && !idle_.empty(); --n) {
    const pid_t tgid = idle_.front();
    idle_.pop_front();
    auto it = process_groups_.find(tgid);
    if (it == process_groups_.end()) continue;
    it->second.queued = false;
    if (it->second.groups != 0) continue;  // watched again since
    if (it->second.in_map) {
      const uint32_t key = static_cast<uint32_t>(tgid);
      (void)bpf_map_delete_elem(tgids_fd_, &key);
    }
    process_groups_.erase(it);
  }
}

void BpfCapture::AddWatch(uint64_t group, const WatchSpec& watch, pid_t tgid, bool inherit,
                          bool& inherits) {
  MutexLock lock(mu_);
  GroupState& g = groups_[group];
  if (g.refs++ > 0) {
    inherits = g.inherits;
    return;
  }
  // The program's table gets the watch from Prime(), with its bytes.
  g.tgid = tgid;
  g.address = watch.region.address;
  g.filter = WatchValue(watch, 0);
  CountProcess(tgid, 1);
  if (inherit && tgid > 0) {
    g.inherited = RegisterAddresses(watch);
    g.inherits = !MapInherited(g.tgid, g.inherited, group);
    if (!g.inherits) g.inherited.clear();
  }
  inherits = g.inherits;
}

std::optional<arch::Error> BpfCapture::Prime(uint64_t group, const WatchSpec& watch, pid_t pid) {
  MutexLock lock(mu_);
  // Only the group's first arm: later ones (more threads of a process) find
  // the bytes the program keeps up to date.
  auto it = groups_.find(group);
  if (it == groups_.end() || it->second.in_table) return std::nullopt;
  GroupState& g = it->second;
  if (pid > 0) {
    const hw_watch fresh = WatchValue(watch, pid);
    std::memcpy(g.filter.last, fresh.last, sizeof fresh.last);
  }
  // One write, before any event is enabled: the program cannot have
  // counted anything yet.
  const hw_watch program = ForProgram(g.filter);
  if (bpf_map_update_elem(watches_fd_, &group, &program, BPF_ANY) != 0) {
    const int err = errno;
    if (err == E2BIG) {
      return arch::Error{err, "the capture program's table is full: it holds " +
                                  std::to_string(max_watches_) +
                                  " reservations with samples delivery at once"};
    }
    return arch::ErrnoError("cannot add the watch to the capture program", err);
  }
  g.in_table = true;
  return std::nullopt;
}

void BpfCapture::UpdateWatch(uint64_t group, const WatchSpec& watch, pid_t pid) {
  // arm64: the old watch's last hit, delivered before the new watch's first.
  std::optional<RawHit> tail;
  {
    MutexLock lock(mu_);
    tail = Rewatch(group, watch, pid);
  }
  if (tail) sink_.Hit(*tail);
}

std::optional<RawHit> BpfCapture::Rewatch(uint64_t group, const WatchSpec& watch, pid_t pid) {
  hw_watch old;
  hw_watch w = WatchValue(watch, pid);
  if (bpf_map_lookup_elem(watches_fd_, &group, &old) == 0) {
    w.emitted = old.emitted;
    w.filtered = old.filtered;
    w.dropped = old.dropped;
    w.traps = old.traps;
  }
  const hw_watch program = ForProgram(w);
  (void)bpf_map_update_elem(watches_fd_, &group, &program, BPF_ANY);
  auto it = groups_.find(group);
  if (it == groups_.end()) return std::nullopt;
  GroupState& g = it->second;
  std::optional<RawHit> tail = TakeTail(g);
  g.address = w.address;
  g.filter = w;
  if (!g.inherits) return tail;
  // MapMoved mapped the new addresses before the kernel moved the events
  // (and the copies it made at clone, with their parents); the old ones go.
  const std::vector<uint64_t> now = RegisterAddresses(watch);
  UnmapInherited(g.tgid, Missing(g.inherited, now));
  g.inherited = now;
  return tail;
}

std::optional<uint64_t> BpfCapture::MapMoved(uint64_t group, const WatchSpec& to) {
  MutexLock lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end() || !it->second.inherits) return std::nullopt;
  return MapInherited(it->second.tgid, Missing(RegisterAddresses(to), it->second.inherited), group);
}

void BpfCapture::UnmapMoved(uint64_t group, const WatchSpec& to) {
  MutexLock lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end() || !it->second.inherits) return;
  UnmapInherited(it->second.tgid, Missing(RegisterAddresses(to), it->second.inherited));
}

void BpfCapture::RemoveWatch(uint64_t group) {
  std::optional<RawHit> tail;  // arm64: the group's last hit
  {
    MutexLock lock(mu_);
    auto it = groups_.find(group);
    if (it == groups_.end() || --it->second.refs > 0) return;
    tail = TakeTail(it->second);
    if (it->second.inherits) UnmapInherited(it->second.tgid, it->second.inherited);
    CountProcess(it->second.tgid, -1);
    if (it->second.in_table) (void)bpf_map_delete_elem(watches_fd_, &group);
    groups_.erase(it);
  }
  if (tail) sink_.Hit(*tail);
}

std::optional<uint64_t> BpfCapture::MapInherited(pid_t tgid, const std::vector<uint64_t>& addresses,
                                                 uint64_t group) {
  for (size_t i = 0; i < addresses.size(); ++i) {
    hw_inherited_key key{};
    key.tgid = static_cast<uint32_t>(tgid);
    key.bp_address = addresses[i];
    if (bpf_map_update_elem(inherited_fd_, &key, &group, BPF_NOEXIST) != 0) {
      UnmapInherited(tgid, {addresses.begin(), addresses.begin() + static_cast<std::ptrdiff_t>(i)});
      return addresses[i];
    }
  }
  return std::nullopt;
}

void BpfCapture::UnmapInherited(pid_t tgid, const std::vector<uint64_t>& addresses) {
  for (uint64_t a : addresses) {
    hw_inherited_key key{};
    key.tgid = static_cast<uint32_t>(tgid);
    key.bp_address = a;
    (void)bpf_map_delete_elem(inherited_fd_, &key);
  }
}

arch::Result<arch::ScopedFd> BpfCapture::Attach(int perf_fd, uint64_t group) {
  LIBBPF_OPTS(bpf_link_create_opts, opts, .perf_event = {.bpf_cookie = group});
  const int link =
      bpf_link_create(bpf_program__fd(skel_->progs.capture), perf_fd, BPF_PERF_EVENT, &opts);
  if (link < 0) return arch::ErrnoError("bpf_link_create(capture program, perf event)");
  return arch::ScopedFd(link);
}

arch::Status BpfCapture::AttachMapped(int perf_fd) {
  if (ioctl(perf_fd, PERF_EVENT_IOC_SET_BPF, bpf_program__fd(skel_->progs.capture)) != 0) {
    return arch::ErrnoError("PERF_EVENT_IOC_SET_BPF(capture program)");
  }
  return arch::OkStatus();
}

arch::Result<arch::ScopedFd> BpfCapture::Guard(int perf_fd, uint64_t group, pid_t tracer_tgid) {
  {
    MutexLock lock(mu_);
    if (guarded_[group]++ == 0) {
      hw_guard g{};
      g.tracer_tgid = static_cast<uint32_t>(tracer_tgid);
      if (bpf_map_update_elem(guards_fd_, &group, &g, BPF_ANY) != 0) {
        const int err = errno;
        guarded_.erase(group);
        return arch::ErrnoError("cannot add the debugger's watch to the guard program", err);
      }
    }
  }
  LIBBPF_OPTS(bpf_link_create_opts, opts, .perf_event = {.bpf_cookie = group});
  const int link =
      bpf_link_create(bpf_program__fd(skel_->progs.guard), perf_fd, BPF_PERF_EVENT, &opts);
  if (link < 0) {
    const int err = errno;
    Unguard(group);
    return arch::ErrnoError("bpf_link_create(guard program, perf event)", err);
  }
  return arch::ScopedFd(link);
}

void BpfCapture::Unguard(uint64_t group) {
  MutexLock lock(mu_);
  auto it = guarded_.find(group);
  if (it == guarded_.end() || --it->second > 0) return;
  guarded_.erase(it);
  (void)bpf_map_delete_elem(guards_fd_, &group);
}

bool BpfCapture::GuardSuppresses() {
  // perf_event's BPF program decides about every side effect of a sample,
  // SIGTRAP included, since Linux 6.10.
  utsname u{};
  unsigned major = 0, minor = 0;
  if (uname(&u) != 0 || std::sscanf(u.release, "%u.%u", &major, &minor) != 2) return false;
  return major > 6 || (major == 6 && minor >= 10);
}

BpfCapture::Counts BpfCapture::Read(uint64_t group) {
  hw_watch w;
  if (bpf_map_lookup_elem(watches_fd_, &group, &w) != 0) return {};
  if (!arch::kDataTrapBeforeAccess) return {w.emitted, w.filtered, w.dropped};
  // arm64: the program records every trap; the daemon filtered some of
  // the pairs, and the last record waits for its pair (counted once it is
  // completed, a few milliseconds later).
  MutexLock lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) return {w.emitted, 0, w.dropped};
  const GroupState& g = it->second;
  const uint64_t waiting = g.pending ? 1 : 0;
  const uint64_t taken = std::min(w.emitted, g.filtered + waiting);
  return {w.emitted - taken, g.filtered, w.dropped};
}

std::optional<RawHit> BpfCapture::Complete(GroupState& g, std::optional<std::string> after,
                                           bool at_trap) {
  RawHit h = std::move(*g.pending);
  g.pending.reset();
  if (after && h.old_value && after->size() == h.old_value->size()) {
    const auto* bytes = reinterpret_cast<const hw_u8*>(after->data());
    const auto len = static_cast<hw_u32>(after->size());
    if (((g.filter.flags & HW_CHANGED) != 0 && *after == *h.old_value) ||
        ((g.filter.flags & HW_CONDITION) != 0 && !hw_holds(&g.filter, bytes, len))) {
      ++g.filtered;
      return std::nullopt;
    }
  }
  // Bytes unknown (the next record was lost, or unreadable): the hit goes
  // out unfiltered, with what is known.
  h.value = std::move(after);
  h.value_at_trap = at_trap && h.value.has_value();
  return h;
}

std::optional<RawHit> BpfCapture::TakeTail(GroupState& g) {
  if (!g.pending) return std::nullopt;
  const size_t len = g.pending->old_value ? g.pending->old_value->size() : g.filter.length;
  return Complete(g, procfs::ReadMemory(g.pending_pid, g.address, len), false);
}

std::vector<RawHit> BpfCapture::TakeTails(bool all) {
  std::vector<RawHit> out;
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  const uint64_t now_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  const uint64_t age_ns = std::chrono::nanoseconds(kTailAge).count();
  const uint64_t max_age_ns = std::chrono::nanoseconds(kTailMaxAge).count();
  const auto traps = [&](uint64_t group) {
    hw_watch w;
    return bpf_map_lookup_elem(watches_fd_, &group, &w) == 0 ? w.traps : 0;
  };
  for (auto& [id, g] : groups_) {
    if (!g.pending) continue;
    if (all) {
      if (auto h = TakeTail(g)) out.push_back(std::move(*h));
      continue;
    }
    // Old enough, and no later trap (its record, in the ring, pairs it
    // exactly): the bytes now are the ones its access left, unless a
    // trap comes while they are read, which leaves it for that record.
    const uint64_t age = now_ns - std::min(now_ns, g.pending_trap_ns);
    if (age < age_ns || traps(id) != g.pending_seq) continue;
    // Past its access: blocked elsewhere, or ended (a loaded machine can
    // keep a thread from its step long after the trap). One that runs on
    // without another trap is read after kTailMaxAge.
    const procfs::ThreadWhere where = procfs::WhereIs(g.pending->tid);
    const bool past = where.kind == procfs::ThreadWhere::kGone ||
                      (where.kind == procfs::ThreadWhere::kBlocked && where.pc != g.pending->ip);
    if (!past && age < max_age_ns) continue;
    const size_t len = g.pending->old_value ? g.pending->old_value->size() : g.filter.length;
    auto after = procfs::ReadMemory(g.pending_pid, g.address, len);
    if (traps(id) != g.pending_seq) continue;
    if (auto h = Complete(g, std::move(after), false)) out.push_back(std::move(*h));
  }
  return out;
}

int BpfCapture::OnRecord(void* self, void* data, size_t size) {
  auto* c = static_cast<BpfCapture*>(self);
  // The record's size tells how many bytes of old and now follow the head.
  if (size < sizeof(hw_record_small)) return 0;
  const size_t n = size >= sizeof(hw_record_full) ? HW_CAPTURE_MAX : HW_SMALL;
  hw_record r;
  std::memcpy(&r, data, sizeof r);
  const char* old = static_cast<const char*>(data) + sizeof r;
  const char* now = old + n;
  if ((r.flags & HW_TRACER_GONE) != 0) {
    c->sink_.DebuggerGone(r.group, static_cast<pid_t>(r.tid));
    return 0;
  }
  if ((r.flags & HW_EXEC) != 0) {
    std::vector<uint64_t> groups;
    {
      MutexLock lock(c->mu_);
      for (const auto& [id, g] : c->groups_) {
        if (g.tgid == static_cast<pid_t>(r.pid)) groups.push_back(id);
      }
    }
    for (uint64_t g : groups) c->sink_.Execed(g, static_cast<pid_t>(r.pid));
    return 0;
  }
  RawHit h;
  h.group = r.group;
  h.tid = static_cast<pid_t>(r.tid);
  h.ip = r.ip;
  h.address = r.address;
  h.cpu = r.cpu;
  const size_t len = std::min<size_t>(r.length, n);
  if ((r.flags & HW_PRE_ACCESS) != 0) {
    // arm64 traps before the access: this record's bytes are its old ones
    // and the previous record's new ones (see capture_abi.h).
    std::optional<std::string> before;
    if (r.read_ok != 0) before.emplace(now, len);
    std::optional<RawHit> done;
    {
      MutexLock lock(c->mu_);
      auto it = c->groups_.find(r.group);
      if (it == c->groups_.end()) return 0;  // released
      GroupState& g = it->second;
      if (g.pending) {
        // Its pair only if no record came between (the ring dropped none).
        const bool next = r.seq == g.pending_seq + 1;
        done = Complete(g, next ? before : std::nullopt, true);
      }
      h.old_value = std::move(before);
      g.pending = std::move(h);
      g.pending_seq = r.seq;
      g.pending_pid = static_cast<pid_t>(r.pid);
      g.pending_trap_ns = r.time_ns;
    }
    if (done) c->sink_.Hit(*done);
    return 0;
  }
  if (r.read_ok != 0) {
    h.value.emplace(now, len);
    h.old_value.emplace(old, len);
    h.value_at_trap = true;
  }
  c->sink_.Hit(h);
  return 0;
}

void BpfCapture::DeliverTails(bool all) {
  if (!arch::kDataTrapBeforeAccess) return;
  std::vector<RawHit> tails;
  {
    MutexLock lock(mu_);
    tails = TakeTails(all);
  }
  for (const RawHit& h : tails) sink_.Hit(h);
}

void BpfCapture::Loop() {
  epoll_event ready[64];
  const int ring_fd = ring_buffer__epoll_fd(ring_);
  for (;;) {
    // A record that did not wake the reader waits at most HW_DRAIN_MS.
    const int n = epoll_wait(epoll_.get(), ready, 64, HW_DRAIN_MS);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (n == 0) (void)ring_buffer__consume(ring_);
    DeliverTails(false);
    bool stop = false;
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == wake_.get()) {
        stop = true;
      } else if (fd == ring_fd) {
        // Everything the ring holds, in one pass.
        (void)ring_buffer__consume(ring_);
      }
    }
    if (stop) {
      (void)ring_buffer__consume(ring_);
      DeliverTails(true);
      return;
    }
  }
}

}  // namespace hwwatch::daemon
