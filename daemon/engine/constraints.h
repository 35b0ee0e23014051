// The constraint engine: which reservations the host's debug registers can
// take, decided exactly as the Linux kernel decides it for breakpoints
// (kernel/events/hw_breakpoint.c), with the sharded locking of the seed
// patch. A pure data structure: no I/O, no system calls, no gRPC.
//
// Per CPU and per slot pool the kernel keeps
//   cpu_pinned         slots held by CPU targets on that CPU, and
//   tsk_pinned[n]      how many tasks hold n+1 slots on that CPU,
// plus, per pool, tsk_pinned_all[n] for tasks whose reservations all target
// every CPU (so that such a task costs O(slots), not O(CPUs)) and a histogram
// of cpu_pinned over CPUs (so that the largest cpu_pinned is O(slots)).
//
// Admission, with w the weight (registers) of the new reservation:
//   CPU target on c:  cpu_pinned[c] + max over tasks of their slots on c + w <= slots
//   task target:      on every CPU c it may run on,
//                     cpu_pinned[c] + the task's slots on c + w <= slots
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "arch/arch.h"
#include "daemon/engine/brlock.h"
#include "daemon/thread_annotations.h"

namespace hwwatch::engine {

enum class LockMode {
  // Per-task shard mutex + the CPU-constraints lock taken shared by task
  // targets (histograms updated atomically: "modification without use") and
  // exclusive by CPU targets. The seed's scheme.
  kSharded,
  // One mutex for everything: the kernel before the seed.
  kGlobal,
  // No accounting at all: the seed's "theoretical ideal", for benchmarks
  // ONLY. Every request is admitted; never use it to hand out registers.
  kNone,
};

std::string_view LockModeName(LockMode m);
std::optional<LockMode> ParseLockMode(std::string_view s);

struct Config {
  unsigned cpus = 1;
  std::vector<arch::SlotPool> pools;  // x86: one mixed pool; arm64: two
  LockMode lock = LockMode::kSharded;
  unsigned shards = 0;  // task shards; 0 picks a default
};

struct Target {
  enum class Kind { kTask, kTaskOnCpu, kCpu };
  Kind kind = Kind::kTask;
  pid_t tid = 0;
  unsigned cpu = 0;

  static Target Task(pid_t tid) { return {Kind::kTask, tid, 0}; }
  static Target TaskOnCpu(pid_t tid, unsigned cpu) { return {Kind::kTaskOnCpu, tid, cpu}; }
  static Target Cpu(unsigned cpu) { return {Kind::kCpu, 0, cpu}; }
  bool is_task() const { return kind != Kind::kCpu; }
  friend bool operator==(const Target&, const Target&) = default;
};

struct Request {
  Target target;
  arch::SlotType type = arch::SlotType::kData;
  unsigned weight = 1;  // registers the watch needs on each CPU it covers
};

// Why a request does not fit, with the counts that decided it.
struct Refusal {
  enum class Reason {
    kCpuFull,   // the CPU's registers are taken (by CPU targets or tasks)
    kTaskFull,  // the task's own reservations fill a CPU it runs on
    kInvalid,   // no such CPU, weight 0 or larger than the pool, bad tid
  };
  Reason reason = Reason::kInvalid;
  arch::SlotType type = arch::SlotType::kData;
  std::optional<unsigned> cpu;  // the CPU that decided
  std::optional<pid_t> tid;     // the task, for task targets
  unsigned slots = 0;           // pool size
  unsigned cpu_pinned = 0;      // held by CPU targets on that CPU
  unsigned task_pinned = 0;     // task target: the task's slots on that CPU;
                                // CPU target: the busiest task's slots there
  unsigned weight = 0;
  std::string detail;  // kInvalid: what is wrong

  std::string Explain() const;
};

using ReservationId = uint64_t;

// A reservation id, or why there is none.
class Admission {
 public:
  Admission(ReservationId id) : v_(id) {}     // NOLINT(google-explicit-constructor)
  Admission(Refusal r) : v_(std::move(r)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  ReservationId id() const { return std::get<0>(v_); }
  const Refusal& refusal() const { return std::get<1>(v_); }

 private:
  std::variant<ReservationId, Refusal> v_;
};

struct Snapshot {
  struct Cpu {
    unsigned cpu = 0;
    unsigned pool = 0;
    std::vector<arch::SlotType> types;
    unsigned slots = 0;
    unsigned cpu_pinned = 0;
    unsigned max_task_pinned = 0;
    std::vector<unsigned> tasks_by_slots;  // [n]: tasks holding n+1 slots here
    unsigned free = 0;                     // what a new CPU target could take
  };
  struct Task {
    pid_t tid = 0;
    unsigned pool = 0;
    unsigned all_cpus = 0;                               // slots on every CPU
    std::vector<std::pair<unsigned, unsigned>> per_cpu;  // (cpu, extra slots)
  };
  std::vector<Cpu> cpus;  // by pool, then CPU
  std::vector<Task> tasks;
  uint64_t reservations = 0;
};

// Registers per pool the engine accounts at most (arm64 has up to 16).
constexpr unsigned kMaxSlots = 16;

class Engine {
 public:
  explicit Engine(Config config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Admission Reserve(const Request& r);
  // False when the id is unknown (never reserved, or already released).
  bool Release(ReservationId id);
  // Replaces reservation `id` (same target) with `replacement`: admitted as
  // if the old one were already released, and atomic: on refusal the old
  // reservation is untouched. Returns nullopt on success.
  std::optional<Refusal> Modify(ReservationId id, const Request& replacement);
  // Would `r` fit now? Changes nothing.
  std::optional<Refusal> Probe(const Request& r);
  // A consistent view of every CPU and task (takes the lock exclusively).
  Snapshot TakeSnapshot();

  const Config& config() const { return config_; }
  unsigned pool_of(arch::SlotType t) const { return pool_of_[static_cast<int>(t)]; }
  unsigned slots(unsigned pool) const { return config_.pools[pool].slots; }

 private:
  struct PoolState;
  struct TaskState;
  struct TaskShard;
  struct IdShard;
  class Locked;

  // The accounting (PoolState, TaskShard::tasks) is guarded by different
  // locks in each LockMode, picked at run time (see the lock rules in
  // constraints.cpp). For Clang's analysis it is this one capability, held
  // for the scope of a Locked: what reads or writes the accounting
  // REQUIRES(accounting_). Which real locks a Locked holds, shared or
  // exclusive, the analysis cannot see; HWWATCH_LOCK_ASSERTS checks that at
  // run time.
  struct CAPABILITY("engine accounting") Accounting {};
  Accounting accounting_;

  std::optional<Refusal> Check(const Request& r) const;
  std::optional<Refusal> Admit(const Request& r, TaskState* task) const REQUIRES(accounting_);
  void Apply(const Request& r, TaskState* task, bool add) REQUIRES(accounting_);
  void MoveTask(unsigned pool, pid_t tid, const TaskState& before, const TaskState& after)
      REQUIRES(accounting_);
  TaskShard& ShardOf(pid_t tid);
  IdShard& IdShardOf(ReservationId id);
  unsigned MaxTaskPinned(unsigned pool, unsigned cpu) const REQUIRES(accounting_);
  unsigned MaxCpuPinned(unsigned pool) const REQUIRES(accounting_);

  Config config_;
  unsigned pool_of_[2] = {0, 0};
  std::vector<std::unique_ptr<PoolState>> pools_;
  std::vector<TaskShard> task_shards_;
  std::vector<IdShard> id_shards_;
  ReservationId NextId();
  std::atomic<ReservationId> next_id_{1};
  // Tells apart engines that reuse an address, for the per-thread id blocks.
  static std::atomic<uint64_t> generations_;
  const uint64_t generation_;

  // sharded: the CPU-constraints lock (see PoolState for what it guards),
  // taken after a task's shard mutex and before an id shard's.
  BrLock cpu_lock_;
  // global: everything.
  Mutex global_;
};

}  // namespace hwwatch::engine
