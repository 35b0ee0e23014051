// What the daemon reads from /proc, in one place: a process's credentials,
// its ancestry, the Yama ptrace scope, a thread's start time, the threads
// of a process, whether a thread still runs, and its memory. The decisions built on
// them live elsewhere (authz.h: who may watch what).
//
// Everything here is a snapshot: the process may change or end right
// after. Missing files read as "no such task" (nullopt, empty, false).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hwwatch::daemon::procfs {

// A process's credentials as /proc shows them.
struct ProcCreds {
  pid_t pid = 0;
  pid_t tgid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;  // TracerPid: who ptraces it (0: nobody)
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  uint64_t cap_prm = 0;
  uint64_t cap_eff = 0;
  std::vector<gid_t> groups;  // supplementary groups
  // get_dumpable() == SUID_DUMP_USER. The kernel makes the files under
  // /proc/PID owned by root when a process is not dumpable; that is how it
  // is read here (so it is only visible for targets whose euid is not 0).
  bool dumpable = true;
  bool HasCap(int cap) const { return (cap_eff >> cap) & 1; }
};

// Parses the text of /proc/PID/status. dumpable is not in it (left true).
std::optional<ProcCreds> ParseProcStatus(const std::string& status);

// Reads /proc/PID/status and the owner of /proc/PID. nullopt: no such task.
std::optional<ProcCreds> ReadProcCreds(pid_t pid);

// The process of thread `tid`; nullopt: gone. Checked with the kernel in
// one system call (tgkill with signal 0) for a thread seen before, for
// `guess` (e.g. the process of a sibling) and for a process's first
// thread; else read from /proc/TID/status.
std::optional<pid_t> TgidOf(pid_t tid, pid_t guess = 0);

// /proc/sys/kernel/yama/ptrace_scope, or 0 when Yama is not built in.
int ReadYamaScope();

// True when `ancestor` is `pid` or one of its ancestors (real parents).
bool IsDescendant(pid_t pid, pid_t ancestor);

// Field 22 of /proc/TGID/task/TID/stat: when the thread started (ticks
// since boot); with the tid it names one thread for the life of the
// system. (Not /proc/TID/stat: that one sums the times of every thread.)
std::optional<uint64_t> StartTime(pid_t tid, pid_t tgid);

// The threads of process `pid`, sorted (empty when it is gone).
std::vector<pid_t> ListThreads(pid_t pid);

// The thread exists and has not ended (a zombie leader has; another
// thread is taken as alive until it is released).
bool ThreadAlive(pid_t tid);

// Where a thread waits (/proc/TID/syscall): kGone when it has ended,
// kRunning while it runs (or cannot be read), else kBlocked at user
// address `pc` (in a system call or elsewhere in the kernel).
struct ThreadWhere {
  enum Kind { kGone, kRunning, kBlocked } kind = kRunning;
  uint64_t pc = 0;
};
ThreadWhere WhereIs(pid_t tid);

// `length` bytes of `pid`'s memory at `address` (process_vm_readv, the
// fast path to what /proc/PID/mem holds); nullopt when length is 0 or the
// bytes cannot be read whole.
std::optional<std::string> ReadMemory(pid_t pid, uint64_t address, uint32_t length);

}  // namespace hwwatch::daemon::procfs
