// Readers of /proc (stand-in until the /proc helpers are gathered here).
#pragma once

#include <sys/types.h>

#include <vector>

#include "daemon/authz.h"

namespace hwwatch::daemon {

// The threads of process `pid`, sorted (empty when it is gone).
std::vector<pid_t> ListThreads(pid_t pid);
// The thread exists and has not ended (a zombie leader has).
bool ThreadAlive(pid_t tid);

}  // namespace hwwatch::daemon
