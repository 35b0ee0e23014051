// A debugger-style client of hwwatchd, run inside the emulated x86_64
// machine: it traces its own child, asks the daemon over gRPC for a watch
// with stop delivery, and its own wait loop must see SIGTRAP stops with
// si_code TRAP_PERF carrying that reservation's id in si_perf_data.
//   vm_debugger SOCKET
// Prints "CASE <arch> daemon_stop_delivery PASS|FAIL: ...".
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "arch/arch.h"
#include "arch/perf_event.h"
#include "client/client.h"

namespace {

volatile uint64_t g_watched;

int Report(bool ok, const std::string& detail) {
  std::printf("CASE %s daemon_stop_delivery %s: %s\n",
              std::string(hwwatch::arch::ArchName(hwwatch::arch::kHostArch)).c_str(),
              ok ? "PASS" : "FAIL", detail.c_str());
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return Report(false, "usage: vm_debugger SOCKET");
  const pid_t child = fork();
  if (child == 0) {
    ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
    raise(SIGSTOP);
    for (int i = 1; i <= 3; ++i) g_watched = i;
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFSTOPPED(status)) return Report(false, "child did not stop");
  auto c = hwwatch::client::Client::Connect(argv[1]);
  if (!c) {
    kill(child, SIGKILL);
    return Report(false, c.error().ToString());
  }
  hwwatch::v1::ReserveRequest req;
  req.mutable_target()->set_tid(child);
  req.mutable_watch()->set_address(reinterpret_cast<uint64_t>(&g_watched));
  req.mutable_watch()->set_length(8);
  req.mutable_watch()->set_access(hwwatch::v1::ACCESS_WRITE);
  req.set_delivery(hwwatch::v1::DELIVERY_STOP);
  auto r = c.value()->Reserve(req);
  if (!r) {
    kill(child, SIGKILL);
    return Report(false, "reserve: " + r.error().ToString());
  }
  int stops = 0, with_id = 0;
  std::string seen;
  int deliver = 0;
  bool step = false;
  for (int i = 0; i < 20; ++i) {
    // arm64 stops at a perf hit before the access, with the kernel's step
    // over it armed: a debugger resumes that stop with a single step (the
    // kernel completes it silently); PTRACE_CONT would cancel the step and
    // leave the watchpoint off for good.
    if (ptrace(step ? PTRACE_SINGLESTEP : PTRACE_CONT, child, nullptr, deliver) != 0) break;
    deliver = 0;
    step = false;
    if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) break;
    if (WSTOPSIG(status) != SIGTRAP) {
      deliver = WSTOPSIG(status);
      continue;
    }
    siginfo_t si{};
    ptrace(PTRACE_GETSIGINFO, child, nullptr, &si);
    ++stops;
    step = hwwatch::arch::kDataTrapBeforeAccess && si.si_code == hwwatch::arch::kTrapPerf;
    const uint64_t data = hwwatch::arch::PerfSigData(si);
    if (si.si_code == hwwatch::arch::kTrapPerf && data == r->id() &&
        reinterpret_cast<uint64_t>(si.si_addr) == reinterpret_cast<uint64_t>(&g_watched)) {
      ++with_id;
    }
    char buf[96];
    std::snprintf(buf, sizeof buf, " [si_code %d si_perf_data %llu]", si.si_code,
                  static_cast<unsigned long long>(data));
    seen += buf;
  }
  const bool exited = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!exited) kill(child, SIGKILL);
  (void)c.value()->Release(r->id());
  return Report(stops == 3 && with_id == 3 && exited,
                "reservation " + std::to_string(r->id()) + ", " + std::to_string(stops) +
                    " SIGTRAP stops, " + std::to_string(with_id) +
                    " with TRAP_PERF, the id and the address" + seen +
                    (exited ? ", child exited 0" : ", CHILD DID NOT EXIT"));
}
