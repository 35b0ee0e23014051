#include "daemon/bpf_capture.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

void BpfCapture::CountProcess(pid_t tgid, int delta) {
  if (tgid <= 0) return;
  const uint32_t key = static_cast<uint32_t>(tgid);
  uint32_t n = 0;
  (void)bpf_map_lookup_elem(tgids_fd_, &key, &n);
  n = static_cast<uint32_t>(static_cast<int>(n) + delta);
  if (n == 0) {
    (void)bpf_map_delete_elem(tgids_fd_, &key);
  } else if (bpf_map_update_elem(tgids_fd_, &key, &n, BPF_ANY) != 0) {
    spdlog::warn("process {}: its exec will not be seen at once (watched_tgids: {})", tgid,
                 std::strerror(errno));
  }
}

std::optional<arch::Error> BpfCapture::AddWatch(uint64_t group, const WatchSpec& watch, pid_t pid,
                                                pid_t tgid, bool inherit, bool& inherits) {
  MutexLock lock(mu_);
  GroupState& g = groups_[group];
  if (g.refs++ > 0) {
    inherits = g.inherits;
    return std::nullopt;
  }
  const hw_watch w = WatchValue(watch, pid);
  if (bpf_map_update_elem(watches_fd_, &group, &w, BPF_ANY) != 0) {
    const int err = errno;
    groups_.erase(group);
    if (err == E2BIG) {
      return arch::Error{err, "the capture program's table is full: it holds " +
                                  std::to_string(max_watches_) +
                                  " reservations with samples delivery at once"};
    }
    return arch::ErrnoError("cannot add the watch to the capture program", err);
  }
  g.tgid = tgid;
  g.address = w.address;
  CountProcess(tgid, 1);
  if (inherit && tgid > 0) {
    g.inherited = RegisterAddresses(watch);
    g.inherits = MapInherited(g.tgid, g.inherited, group);
    if (!g.inherits) g.inherited.clear();
  }
  inherits = g.inherits;
  return std::nullopt;
}

void BpfCapture::Prime(uint64_t group, const WatchSpec& watch, pid_t pid) {
  if (pid <= 0) return;
  MutexLock lock(mu_);
  // Only the group's first arm: later ones (more threads of a process) find
  // the bytes the program keeps up to date.
  if (auto it = groups_.find(group); it == groups_.end() || it->second.refs != 1) return;
  hw_watch w;
  if (bpf_map_lookup_elem(watches_fd_, &group, &w) != 0) return;
  const hw_watch fresh = WatchValue(watch, pid);
  std::memcpy(w.last, fresh.last, sizeof w.last);
  (void)bpf_map_update_elem(watches_fd_, &group, &w, BPF_EXIST);
}

void BpfCapture::UpdateWatch(uint64_t group, const WatchSpec& watch, pid_t pid) {
  MutexLock lock(mu_);
  hw_watch old;
  hw_watch w = WatchValue(watch, pid);
  if (bpf_map_lookup_elem(watches_fd_, &group, &old) == 0) {
    w.emitted = old.emitted;
    w.filtered = old.filtered;
    w.dropped = old.dropped;
  }
  (void)bpf_map_update_elem(watches_fd_, &group, &w, BPF_ANY);
  auto it = groups_.find(group);
  if (it != groups_.end()) it->second.address = w.address;
  if (it == groups_.end() || !it->second.inherits) return;
  // The kernel moved the inherited copies with their parents.
  GroupState& g = it->second;
  UnmapInherited(g.tgid, g.inherited);
  g.inherited = RegisterAddresses(watch);
  if (!MapInherited(g.tgid, g.inherited, group)) {
    spdlog::warn(
        "reservation {}: new threads of process {} are not captured after the modify: "
        "another watch of that process uses the same address",
        group, g.tgid);
    g.inherited.clear();
  }
}

void BpfCapture::RemoveWatch(uint64_t group) {
  MutexLock lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end() || --it->second.refs > 0) return;
  if (it->second.inherits) UnmapInherited(it->second.tgid, it->second.inherited);
  CountProcess(it->second.tgid, -1);
  groups_.erase(it);
  (void)bpf_map_delete_elem(watches_fd_, &group);
}

bool BpfCapture::MapInherited(pid_t tgid, const std::vector<uint64_t>& addresses, uint64_t group) {
  for (size_t i = 0; i < addresses.size(); ++i) {
    hw_inherited_key key{};
    key.tgid = static_cast<uint32_t>(tgid);
    key.bp_address = addresses[i];
    if (bpf_map_update_elem(inherited_fd_, &key, &group, BPF_NOEXIST) != 0) {
      UnmapInherited(tgid, {addresses.begin(), addresses.begin() + static_cast<std::ptrdiff_t>(i)});
      return false;
    }
  }
  return true;
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

BpfCapture::Counts BpfCapture::Read(uint64_t group) const {
  hw_watch w;
  if (bpf_map_lookup_elem(watches_fd_, &group, &w) != 0) return {};
  return {w.emitted, w.filtered, w.dropped};
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
  if (r.read_ok != 0) {
    if ((r.flags & HW_PRE_ACCESS) != 0) {
      // arm64 traps before the access: the bytes read are the old ones,
      // exact. The new ones are read here, after the task stepped over the
      // access (at delivery: a later write may show).
      h.old_value.emplace(now, len);
      uint64_t at = 0;
      {
        MutexLock lock(c->mu_);
        auto it = c->groups_.find(r.group);
        if (it != c->groups_.end()) at = it->second.address;
      }
      if (at != 0) h.value = procfs::ReadMemory(static_cast<pid_t>(r.pid), at, len);
    } else {
      h.value.emplace(now, len);
      h.old_value.emplace(old, len);
      h.value_at_trap = true;
    }
  }
  c->sink_.Hit(h);
  return 0;
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
      return;
    }
  }
}

}  // namespace hwwatch::daemon
