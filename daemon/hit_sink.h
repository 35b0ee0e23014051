// Where every backend reports what its registers saw: hits, records the
// kernel dropped, threads that ended and processes that exec'd. The
// sample reader calls it on its own thread; the tracer through its
// executor (daemon/executor.h), never on the tracer thread itself.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "daemon/types.h"

namespace hwwatch::daemon {

class HitSink {
 public:
  virtual ~HitSink() = default;
  virtual void Hit(const RawHit& hit) = 0;
  // The kernel dropped `count` records of the group's registers.
  virtual void Lost(uint64_t group, uint64_t count) = 0;
  // A watched thread ended: the group loses it.
  virtual void ThreadGone(uint64_t group, pid_t tid) = 0;
  // The process exec'd: the group's watches there are gone.
  virtual void Execed(uint64_t group, pid_t tgid) = 0;
  // A debugger's stop watch trapped on `tid` after that debugger let go of
  // it (the capture program's guard): the watch must go.
  virtual void DebuggerGone(uint64_t group, pid_t tid) { (void)group, (void)tid; }
};

}  // namespace hwwatch::daemon
