// The daemon's side of the constraint engine: targets in the engine's
// terms, and its refusals as the daemon's Problems.
#pragma once

#include "daemon/engine/constraints.h"
#include "daemon/error.h"
#include "daemon/types.h"

namespace hwwatch::daemon {

engine::Target ToEngine(const TargetSpec& t);

// The engine's refusal with its counts and explanation.
Refusal RefusalFromEngine(const engine::Refusal& r);

// RESOURCE_EXHAUSTED with the engine's refusal attached.
Problem EngineProblem(const engine::Refusal& r);

// Admits `weight` registers of `type` on `t`: the engine's id, or why not.
Result<engine::ReservationId> Admit(engine::Engine& engine, const TargetSpec& t,
                                    arch::SlotType type, unsigned weight);

}  // namespace hwwatch::daemon
