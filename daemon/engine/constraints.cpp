#include "daemon/engine/constraints.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <tuple>

namespace hwwatch::engine {

// ---------------------------------------------------------------- lock rules
//
// sharded mode (the seed patch):
//   - A task-target operation takes its task shard's mutex (tid % nshards),
//     then cpu_lock_ SHARED. Under them it may read cpu_pinned and
//     cpu_pinned_hist, read and write its own TaskState, and increment or
//     decrement tsk_pinned / tsk_pinned_all atomically, but never read them:
//     "modification without use". Other tasks update the same histograms
//     concurrently; their sum is right, any single read of them is not.
//   - A CPU-target operation (and a snapshot) takes cpu_lock_ EXCLUSIVE.
//     No task operation runs then, so the histograms are stable and it may
//     read them; it alone writes cpu_pinned and cpu_pinned_hist.
//   - The id map shards are leaves: taken last, held briefly.
// global mode: global_ guards everything.
// none mode: nothing is accounted.
//
// With HWWATCH_LOCK_ASSERTS these rules are checked on every access, as the
// kernel's lockdep_assert_held*() do.

namespace {

#if defined(HWWATCH_LOCK_ASSERTS)
struct HeldLocks {
  int shared = 0;
  int exclusive = 0;
  int global = 0;
  const void* shard = nullptr;
};
thread_local HeldLocks held;
void AbortLockRule(const char* rule) {
  std::fprintf(stderr, "hwwatch engine lock rule broken: %s\n", rule);
  std::abort();
}
#define ENGINE_ASSERT(cond, rule)     \
  do {                                \
    if (!(cond)) AbortLockRule(rule); \
  } while (0)
#define ENGINE_NOTE(stmt) stmt
#else
#define ENGINE_ASSERT(cond, rule) \
  do {                            \
  } while (0)
#define ENGINE_NOTE(stmt) \
  do {                    \
  } while (0)
#endif

}  // namespace

// Per slot pool.
struct Engine::PoolState {
  unsigned slots = 0;
  unsigned cpus = 0;
  // Written under cpu_lock_ exclusive; read under shared or exclusive.
  std::vector<unsigned> cpu_pinned;       // [cpu]
  std::vector<unsigned> cpu_pinned_hist;  // [v]: CPUs whose cpu_pinned == v
  // Modified under shared (atomically); read only under exclusive.
  std::unique_ptr<std::atomic<int>[]> tsk_pinned;  // [cpu * slots + n]
  // The kernel's tsk_pinned_all, split by reader (BrLock::ThreadSlot()) so
  // that task operations on different threads do not share a cache line;
  // only the sum over rows means anything (a row may go negative when one
  // thread reserves and another releases).
  struct alignas(64) AllRow {
    std::atomic<int> n[kMaxSlots];
  };
  std::unique_ptr<AllRow[]> tsk_pinned_all;  // [reader][n]

  PoolState(unsigned s, unsigned c)
      : slots(s),
        cpus(c),
        cpu_pinned(c, 0),
        cpu_pinned_hist(s + 1, 0),
        tsk_pinned(new std::atomic<int>[size_t{c} * s]),
        tsk_pinned_all(new AllRow[BrLock::kSlots]) {
    cpu_pinned_hist[0] = c;
    for (size_t i = 0; i < size_t{c} * s; ++i) tsk_pinned[i].store(0);
    for (size_t r = 0; r < BrLock::kSlots; ++r) {
      for (auto& v : tsk_pinned_all[r].n) v.store(0);
    }
  }
  std::atomic<int>& Hist(unsigned cpu, unsigned n) { return tsk_pinned[size_t{cpu} * slots + n]; }
  std::atomic<int>& AllMine(unsigned n) { return tsk_pinned_all[BrLock::ThreadSlot()].n[n]; }
  // Tasks holding n+1 slots on every CPU (stable only under exclusive).
  int AllSum(unsigned n) const {
    int sum = 0;
    for (size_t r = 0; r < BrLock::kSlots; ++r) {
      sum += tsk_pinned_all[r].n[n].load(std::memory_order_relaxed);
    }
    return sum;
  }
};

namespace {

// One task's slots in one pool: `all` on every CPU, plus extra slots on
// single CPUs (few: kept as a small sorted vector).
struct PoolCounts {
  unsigned all = 0;
  std::vector<std::pair<unsigned, unsigned>> on;

  unsigned On(unsigned cpu) const {
    for (const auto& [c, n] : on) {
      if (c == cpu) return n;
    }
    return 0;
  }
  void AddOn(unsigned cpu, int delta) {
    for (auto it = on.begin(); it != on.end(); ++it) {
      if (it->first == cpu) {
        it->second += delta;
        if (it->second == 0) on.erase(it);
        return;
      }
    }
    on.emplace_back(cpu, static_cast<unsigned>(delta));
  }
  bool mixed() const { return !on.empty(); }
  bool empty() const { return all == 0 && on.empty(); }
};

}  // namespace

struct Engine::TaskState {
  PoolCounts pool[2];
  bool empty() const { return pool[0].empty() && pool[1].empty(); }
};

struct alignas(64) Engine::TaskShard {
  // sharded mode: guards `tasks` with cpu_lock_ shared (or cpu_lock_
  // exclusive alone); global mode: global_ does. Not GUARDED_BY: the guard
  // depends on the mode; the analysis sees it as Engine::accounting_.
  Mutex mu;
  std::unordered_map<pid_t, TaskState> tasks;
};

struct alignas(64) Engine::IdShard {
  Mutex mu;  // a leaf: taken last (after a Locked), held briefly
  std::unordered_map<ReservationId, Request> live GUARDED_BY(mu);
};

// Takes the locks an operation on `target` needs, by mode; to the analysis
// it holds Engine::accounting_ for its scope.
class SCOPED_CAPABILITY Engine::Locked {
 public:
  Locked(Engine& e, const Target& target) ACQUIRE(e.accounting_) : e_(e) {
    switch (e.config_.lock) {
      case LockMode::kSharded:
        if (target.is_task()) {
          shard_ = &e.ShardOf(target.tid);
          shard_->mu.lock();
          e.cpu_lock_.lock_shared();
          ENGINE_NOTE(held.shared++);
          ENGINE_NOTE(held.shard = shard_);
        } else {
          e.cpu_lock_.lock();
          exclusive_ = true;
          ENGINE_NOTE(held.exclusive++);
        }
        break;
      case LockMode::kGlobal:
        e.global_.lock();
        ENGINE_NOTE(held.global++);
        break;
      case LockMode::kNone:
        break;
    }
  }
  // Everything exclusive (snapshots).
  explicit Locked(Engine& e) ACQUIRE(e.accounting_) : e_(e) {
    if (e.config_.lock == LockMode::kSharded) {
      e.cpu_lock_.lock();
      exclusive_ = true;
      ENGINE_NOTE(held.exclusive++);
    } else if (e.config_.lock == LockMode::kGlobal) {
      e.global_.lock();
      ENGINE_NOTE(held.global++);
    }
  }
  ~Locked() RELEASE() {
    switch (e_.config_.lock) {
      case LockMode::kSharded:
        if (exclusive_) {
          ENGINE_NOTE(held.exclusive--);
          e_.cpu_lock_.unlock();
        } else {
          ENGINE_NOTE(held.shared--);
          ENGINE_NOTE(held.shard = nullptr);
          e_.cpu_lock_.unlock_shared();
          shard_->mu.unlock();
        }
        break;
      case LockMode::kGlobal:
        ENGINE_NOTE(held.global--);
        e_.global_.unlock();
        break;
      case LockMode::kNone:
        break;
    }
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

 private:
  Engine& e_;
  TaskShard* shard_ = nullptr;
  bool exclusive_ = false;
};

// Lock-rule checks, by mode.
#define ASSERT_STABLE_SNAPSHOT()                                          \
  ENGINE_ASSERT(config_.lock != LockMode::kSharded || held.exclusive > 0, \
                "reading the task histograms needs cpu_lock_ exclusive"); \
  ENGINE_ASSERT(config_.lock != LockMode::kGlobal || held.global > 0, "global lock")
#define ASSERT_TASK_LOCKED(tid)                                                              \
  ENGINE_ASSERT(                                                                             \
      config_.lock != LockMode::kSharded ||                                                  \
          (held.shared > 0 &&                                                                \
           held.shard == &task_shards_[static_cast<uint32_t>(tid) % task_shards_.size()]) || \
          held.exclusive > 0,                                                                \
      "a task's state needs its shard mutex and cpu_lock_ shared");                          \
  ENGINE_ASSERT(config_.lock != LockMode::kGlobal || held.global > 0, "global lock")
#define ASSERT_CPU_READ()                                                               \
  ENGINE_ASSERT(config_.lock != LockMode::kSharded || held.shared + held.exclusive > 0, \
                "cpu_pinned needs cpu_lock_");                                          \
  ENGINE_ASSERT(config_.lock != LockMode::kGlobal || held.global > 0, "global lock")

std::string_view LockModeName(LockMode m) {
  switch (m) {
    case LockMode::kSharded:
      return "sharded";
    case LockMode::kGlobal:
      return "global";
    case LockMode::kNone:
      return "none";
  }
  return "?";
}

std::optional<LockMode> ParseLockMode(std::string_view s) {
  for (LockMode m : {LockMode::kSharded, LockMode::kGlobal, LockMode::kNone}) {
    if (LockModeName(m) == s) return m;
  }
  return std::nullopt;
}

std::string Refusal::Explain() const {
  const std::string pool = type == arch::SlotType::kInst ? "breakpoint" : "watchpoint";
  auto n = [](unsigned v) { return std::to_string(v); };
  switch (reason) {
    case Reason::kInvalid:
      return detail;
    case Reason::kCpuFull:
    case Reason::kTaskFull:
      break;
  }
  const std::string where = "cpu " + n(cpu.value_or(0));
  if (tid) {
    return "task " + std::to_string(*tid) + " cannot take " + n(weight) + " more " + pool +
           " slot(s) on " + where + ": " + n(cpu_pinned) + " held by CPU targets + " +
           n(task_pinned) + " held by the task + " + n(weight) + " needed > " + n(slots) + " slots";
  }
  return where + " has no room for " + n(weight) + " more " + pool + " slot(s): " + n(cpu_pinned) +
         " held by CPU targets + " + n(task_pinned) + " held by its busiest task + " + n(weight) +
         " needed > " + n(slots) + " slots";
}

std::atomic<uint64_t> Engine::generations_{1};

Engine::Engine(Config config) : config_(std::move(config)), generation_(generations_.fetch_add(1)) {
  if (config_.cpus == 0) config_.cpus = 1;
  for (auto& p : config_.pools) p.slots = std::min(p.slots, kMaxSlots);
  for (unsigned i = 0; i < config_.pools.size(); ++i) {
    for (arch::SlotType t : config_.pools[i].types) pool_of_[static_cast<int>(t)] = i;
    pools_.push_back(std::make_unique<PoolState>(config_.pools[i].slots, config_.cpus));
  }
  if (config_.shards == 0) {
    // Like the kernel's one mutex per possible CPU, with a floor so a small
    // host still spreads many tasks.
    config_.shards = std::max(64u, 4 * std::max(1u, std::thread::hardware_concurrency()));
  }
  task_shards_ = std::vector<TaskShard>(config_.shards);
  id_shards_ = std::vector<IdShard>(config_.shards);
}

Engine::~Engine() = default;

ReservationId Engine::NextId() {
  // Each thread takes ids in blocks, so threads do not share the counter's
  // cache line on every reservation. Ids stay unique per engine.
  constexpr ReservationId kBlock = 256;
  struct Block {
    const Engine* owner = nullptr;
    uint64_t generation = 0;
    ReservationId next = 0, end = 0;
  };
  thread_local Block b;
  if (b.owner != this || b.generation != generation_ || b.next == b.end) {
    b.owner = this;
    b.generation = generation_;
    b.next = next_id_.fetch_add(kBlock, std::memory_order_relaxed);
    b.end = b.next + kBlock;
  }
  return b.next++;
}

Engine::TaskShard& Engine::ShardOf(pid_t tid) {
  return task_shards_[static_cast<uint32_t>(tid) % task_shards_.size()];
}

Engine::IdShard& Engine::IdShardOf(ReservationId id) { return id_shards_[id % id_shards_.size()]; }

unsigned Engine::MaxTaskPinned(unsigned p, unsigned cpu) const {
  ASSERT_STABLE_SNAPSHOT();
  PoolState& pool = *pools_[p];
  for (unsigned n = pool.slots; n-- > 0;) {
    if (pool.Hist(cpu, n).load(std::memory_order_relaxed) > 0 || pool.AllSum(n) > 0) {
      return n + 1;
    }
  }
  return 0;
}

unsigned Engine::MaxCpuPinned(unsigned p) const {
  ASSERT_CPU_READ();
  const PoolState& pool = *pools_[p];
  for (unsigned v = pool.slots + 1; v-- > 0;) {
    if (pool.cpu_pinned_hist[v] > 0) return v;
  }
  return 0;
}

std::optional<Refusal> Engine::Check(const Request& r) const {
  Refusal bad;
  bad.type = r.type;
  bad.weight = r.weight;
  const unsigned p = pool_of(r.type);
  if (p >= pools_.size()) {
    bad.detail = "this host has no registers of that type";
    return bad;
  }
  bad.slots = pools_[p]->slots;
  if (r.weight == 0 || r.weight > pools_[p]->slots) {
    bad.detail = "a reservation needs between 1 and " + std::to_string(pools_[p]->slots) +
                 " registers, not " + std::to_string(r.weight);
    return bad;
  }
  if (r.target.kind != Target::Kind::kTask && r.target.cpu >= config_.cpus) {
    bad.detail = "cpu " + std::to_string(r.target.cpu) + " does not exist";
    return bad;
  }
  if (r.target.is_task() && r.target.tid <= 0) {
    bad.detail = "task id " + std::to_string(r.target.tid) + " is not valid";
    return bad;
  }
  return std::nullopt;
}

std::optional<Refusal> Engine::Admit(const Request& r, TaskState* task) const {
  const unsigned p = pool_of(r.type);
  const PoolState& pool = *pools_[p];
  Refusal no;
  no.type = r.type;
  no.weight = r.weight;
  no.slots = pool.slots;
  const unsigned cpu = r.target.cpu;
  if (!r.target.is_task()) {
    const unsigned busiest = MaxTaskPinned(p, cpu);
    if (pool.cpu_pinned[cpu] + busiest + r.weight <= pool.slots) return std::nullopt;
    no.reason = Refusal::Reason::kCpuFull;
    no.cpu = cpu;
    no.cpu_pinned = pool.cpu_pinned[cpu];
    no.task_pinned = busiest;
    return no;
  }
  ASSERT_TASK_LOCKED(r.target.tid);
  ASSERT_CPU_READ();
  static const PoolCounts kNone;
  const PoolCounts& mine = task ? task->pool[p] : kNone;
  // The CPU where this task is most constrained, and by how much.
  unsigned worst_cpu = cpu;
  unsigned worst = 0;
  if (r.target.kind == Target::Kind::kTaskOnCpu) {
    worst = pool.cpu_pinned[cpu] + mine.On(cpu);
  } else {
    // Fast path: the largest cpu_pinned anywhere, from its histogram; a
    // task with per-CPU reservations adds those few CPUs.
    worst = MaxCpuPinned(p);
    bool named = false;
    for (const auto& [c, n] : mine.on) {
      if (pool.cpu_pinned[c] + n > worst) {
        worst = pool.cpu_pinned[c] + n;
        worst_cpu = c;
        named = true;
      }
    }
    if (!named && worst + mine.all + r.weight > pool.slots) {
      // Refused by the largest cpu_pinned: name such a CPU (O(CPUs), only
      // on this path).
      for (unsigned c = 0; c < pool.cpus; ++c) {
        if (pool.cpu_pinned[c] == worst) {
          worst_cpu = c;
          break;
        }
      }
    }
  }
  if (worst + mine.all + r.weight <= pool.slots) return std::nullopt;
  no.tid = r.target.tid;
  no.cpu = worst_cpu;
  no.cpu_pinned = pool.cpu_pinned[worst_cpu];
  no.task_pinned = mine.all + mine.On(worst_cpu);
  no.reason =
      no.cpu_pinned > no.task_pinned ? Refusal::Reason::kCpuFull : Refusal::Reason::kTaskFull;
  return no;
}

// Moves one task's contribution to the histograms of pool `p` from `before`
// to `after` (the kernel's toggle_bp_slot cases).
void Engine::MoveTask(unsigned p, pid_t tid, const TaskState& before_state,
                      const TaskState& after_state) {
  (void)tid;
  ASSERT_TASK_LOCKED(tid);
  PoolState& pool = *pools_[p];
  const PoolCounts& before = before_state.pool[p];
  const PoolCounts& after = after_state.pool[p];
  auto bump = [](std::atomic<int>& a, int d) { a.fetch_add(d, std::memory_order_relaxed); };
  if (!before.mixed() && !after.mixed()) {
    // Only on all CPUs, before and after: one histogram for every CPU.
    if (before.all) bump(pool.AllMine(before.all - 1), -1);
    if (after.all) bump(pool.AllMine(after.all - 1), +1);
    return;
  }
  if (before.mixed() && after.mixed() && before.all == after.all) {
    // Per-CPU changes only: just the CPUs named on either side.
    auto touch = [&](unsigned c) {
      const unsigned b = before.all + before.On(c), a = after.all + after.On(c);
      if (a == b) return;
      if (b) bump(pool.Hist(c, b - 1), -1);
      if (a) bump(pool.Hist(c, a - 1), +1);
    };
    for (const auto& [c, n] : before.on) touch(c);
    for (const auto& [c, n] : after.on) {
      if (before.On(c) == 0) touch(c);
    }
    return;
  }
  // The task enters or leaves the per-CPU histograms, or changes its
  // all-CPU count while in them: every CPU moves (as in the kernel).
  if (!before.mixed()) {
    if (before.all) bump(pool.AllMine(before.all - 1), -1);
  } else {
    for (unsigned c = 0; c < pool.cpus; ++c) {
      const unsigned b = before.all + before.On(c);
      if (b) bump(pool.Hist(c, b - 1), -1);
    }
  }
  if (!after.mixed()) {
    if (after.all) bump(pool.AllMine(after.all - 1), +1);
  } else {
    for (unsigned c = 0; c < pool.cpus; ++c) {
      const unsigned a = after.all + after.On(c);
      if (a) bump(pool.Hist(c, a - 1), +1);
    }
  }
}

void Engine::Apply(const Request& r, TaskState* task, bool add) {
  const unsigned p = pool_of(r.type);
  PoolState& pool = *pools_[p];
  const int d = add ? static_cast<int>(r.weight) : -static_cast<int>(r.weight);
  if (!r.target.is_task()) {
    ASSERT_STABLE_SNAPSHOT();
    unsigned& pinned = pool.cpu_pinned[r.target.cpu];
    pool.cpu_pinned_hist[pinned]--;
    pinned += d;
    pool.cpu_pinned_hist[pinned]++;
    return;
  }
  TaskState before = *task;
  PoolCounts& mine = task->pool[p];
  if (r.target.kind == Target::Kind::kTask) {
    mine.all += d;
  } else {
    mine.AddOn(r.target.cpu, d);
  }
  MoveTask(p, r.target.tid, before, *task);
}

Admission Engine::Reserve(const Request& r) {
  if (config_.lock == LockMode::kNone) return NextId();
  if (auto bad = Check(r)) return *bad;
  ReservationId id = 0;
  {
    Locked lock(*this, r.target);
    TaskState* task = nullptr;
    if (r.target.is_task()) {
      auto& tasks = ShardOf(r.target.tid).tasks;
      auto it = tasks.find(r.target.tid);
      if (auto no = Admit(r, it == tasks.end() ? nullptr : &it->second)) return *no;
      task = &tasks[r.target.tid];
    } else if (auto no = Admit(r, nullptr)) {
      return *no;
    }
    Apply(r, task, true);
    id = NextId();
    IdShard& ids = IdShardOf(id);
    MutexLock id_lock(ids.mu);
    ids.live.emplace(id, r);
  }
  return id;
}

bool Engine::Release(ReservationId id) {
  if (config_.lock == LockMode::kNone) return true;
  Request r;
  {
    // Whoever erases the id owns its release; a second Release finds nothing.
    IdShard& ids = IdShardOf(id);
    MutexLock id_lock(ids.mu);
    auto it = ids.live.find(id);
    if (it == ids.live.end()) return false;
    r = it->second;
    ids.live.erase(it);
  }
  Locked lock(*this, r.target);
  if (!r.target.is_task()) {
    Apply(r, nullptr, false);
    return true;
  }
  auto& tasks = ShardOf(r.target.tid).tasks;
  auto it = tasks.find(r.target.tid);
  assert(it != tasks.end());
  Apply(r, &it->second, false);
  if (it->second.empty()) tasks.erase(it);
  return true;
}

std::optional<Refusal> Engine::Modify(ReservationId id, const Request& replacement) {
  if (config_.lock == LockMode::kNone) return std::nullopt;
  if (auto bad = Check(replacement)) return bad;
  Target target;
  {
    IdShard& ids = IdShardOf(id);
    MutexLock id_lock(ids.mu);
    auto it = ids.live.find(id);
    if (it == ids.live.end()) {
      Refusal bad;
      bad.detail = "reservation " + std::to_string(id) + " does not exist";
      return bad;
    }
    target = it->second.target;
  }
  if (!(target == replacement.target)) {
    Refusal bad;
    bad.type = replacement.type;
    bad.detail = "a modify keeps the reservation's target";
    return bad;
  }
  Locked lock(*this, target);
  // Re-read under the operation's lock: a concurrent Release may have taken
  // the id meanwhile (then it waits for this lock, and finds the update).
  IdShard& ids = IdShardOf(id);
  MutexLock id_lock(ids.mu);
  auto it = ids.live.find(id);
  if (it == ids.live.end()) {
    Refusal bad;
    bad.detail = "reservation " + std::to_string(id) + " was released";
    return bad;
  }
  TaskState* task = nullptr;
  if (target.is_task()) task = &ShardOf(target.tid).tasks.at(target.tid);
  // As the kernel's modify: release, try the new one, put the old one back
  // on refusal. The caller sees either the new one or the old untouched.
  Apply(it->second, task, false);
  if (auto no = Admit(replacement, task)) {
    Apply(it->second, task, true);
    return no;
  }
  Apply(replacement, task, true);
  it->second = replacement;
  return std::nullopt;
}

std::optional<Refusal> Engine::Probe(const Request& r) {
  if (config_.lock == LockMode::kNone) return std::nullopt;
  if (auto bad = Check(r)) return bad;
  Locked lock(*this, r.target);
  if (!r.target.is_task()) return Admit(r, nullptr);
  auto& tasks = ShardOf(r.target.tid).tasks;
  auto it = tasks.find(r.target.tid);
  return Admit(r, it == tasks.end() ? nullptr : &it->second);
}

Snapshot Engine::TakeSnapshot() {
  Snapshot s;
  if (config_.lock == LockMode::kNone) return s;
  Locked lock(*this);
  for (unsigned p = 0; p < pools_.size(); ++p) {
    PoolState& pool = *pools_[p];
    std::vector<int> all(pool.slots);
    for (unsigned n = 0; n < pool.slots; ++n) all[n] = pool.AllSum(n);
    for (unsigned c = 0; c < pool.cpus; ++c) {
      Snapshot::Cpu v;
      v.cpu = c;
      v.pool = p;
      v.types = config_.pools[p].types;
      v.slots = pool.slots;
      v.cpu_pinned = pool.cpu_pinned[c];
      v.max_task_pinned = MaxTaskPinned(p, c);
      v.tasks_by_slots.resize(pool.slots);
      for (unsigned n = 0; n < pool.slots; ++n) {
        v.tasks_by_slots[n] = pool.Hist(c, n).load(std::memory_order_relaxed) + all[n];
      }
      const unsigned used = v.cpu_pinned + v.max_task_pinned;
      v.free = used >= v.slots ? 0 : v.slots - used;
      s.cpus.push_back(std::move(v));
    }
  }
  for (TaskShard& shard : task_shards_) {
    for (const auto& [tid, state] : shard.tasks) {
      for (unsigned p = 0; p < pools_.size(); ++p) {
        const PoolCounts& pc = state.pool[p];
        if (pc.empty()) continue;
        Snapshot::Task t;
        t.tid = tid;
        t.pool = p;
        t.all_cpus = pc.all;
        t.per_cpu = pc.on;
        std::sort(t.per_cpu.begin(), t.per_cpu.end());
        s.tasks.push_back(std::move(t));
      }
    }
  }
  std::sort(s.tasks.begin(), s.tasks.end(), [](const Snapshot::Task& a, const Snapshot::Task& b) {
    return std::tie(a.tid, a.pool) < std::tie(b.tid, b.pool);
  });
  for (IdShard& ids : id_shards_) {
    MutexLock id_lock(ids.mu);
    s.reservations += ids.live.size();
  }
  return s;
}

}  // namespace hwwatch::engine
