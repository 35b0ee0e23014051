#include "daemon/accounting.h"

namespace hwwatch::daemon {

engine::Target ToEngine(const TargetSpec& t) {
  switch (t.kind) {
    case TargetSpec::Kind::kCpu:
      return engine::Target::Cpu(t.cpu);
    case TargetSpec::Kind::kThreadOnCpu:
      return engine::Target::TaskOnCpu(t.tid, t.cpu);
    default:
      return engine::Target::Task(t.tid);
  }
}

Refusal RefusalFromEngine(const engine::Refusal& r) {
  Refusal out;
  switch (r.reason) {
    case engine::Refusal::Reason::kCpuFull:
      out.reason = Refusal::Reason::kCpuFull;
      break;
    case engine::Refusal::Reason::kTaskFull:
      out.reason = Refusal::Reason::kTaskFull;
      break;
    case engine::Refusal::Reason::kInvalid:
      out.reason = Refusal::Reason::kUnspecified;
      break;
  }
  out.slot_type = r.type;
  out.cpu = r.cpu;
  out.tid = r.tid;
  out.slots = r.slots;
  out.cpu_pinned = r.cpu_pinned;
  out.task_pinned = r.task_pinned;
  out.weight = r.weight;
  out.explanation = r.Explain();
  return out;
}

Problem EngineProblem(const engine::Refusal& r) {
  Refusal refusal = RefusalFromEngine(r);
  std::string message = refusal.explanation;
  return MakeProblem(Code::kResourceExhausted, std::move(message), std::move(refusal));
}

Result<engine::ReservationId> Admit(engine::Engine& engine, const TargetSpec& t,
                                    arch::SlotType type, unsigned weight) {
  engine::Admission a = engine.Reserve({ToEngine(t), type, weight});
  if (!a) return EngineProblem(a.refusal());
  return a.id();
}

}  // namespace hwwatch::daemon
