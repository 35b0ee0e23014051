#include "daemon/procfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>
#include <unordered_map>

namespace hwwatch::daemon::procfs {

namespace {

// A small /proc file in one or two reads (no stream: these are read on
// every Reserve and for every thread of a process). Empty when absent.
std::string Slurp(const std::string& path) {
  std::string out;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  // A read that does not fill the buffer has the whole file (these are
  // seq_files, generated whole at the first read).
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) {
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<size_t>(n) < sizeof buf) break;
  }
  close(fd);
  return out;
}

// /proc/TGID/task/TID/stat after the command name, from field 3 (the
// state) on; empty when the thread is gone. (TGID may be the tid itself:
// /proc/TID/task lists the threads of TID's process.)
std::string TaskStatFields(pid_t tgid, pid_t tid) {
  const std::string line =
      Slurp("/proc/" + std::to_string(tgid) + "/task/" + std::to_string(tid) + "/stat");
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return "";
  return line.substr(paren + 2);
}

bool ParseIds(const std::string& line, unsigned* a, unsigned* b, unsigned* c) {
  std::istringstream in(line);
  return static_cast<bool>(in >> *a >> *b >> *c);
}

}  // namespace

std::optional<ProcCreds> ParseProcStatus(const std::string& status) {
  ProcCreds c;
  bool uid = false, gid = false, pid = false;
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    unsigned a = 0, b = 0, d = 0;
    if (key == "Uid" && ParseIds(value, &a, &b, &d)) {
      c.ruid = a, c.euid = b, c.suid = d;
      uid = true;
    } else if (key == "Gid" && ParseIds(value, &a, &b, &d)) {
      c.rgid = a, c.egid = b, c.sgid = d;
      gid = true;
    } else if (key == "Pid") {
      c.pid = std::stoi(value);
      pid = true;
    } else if (key == "Tgid") {
      c.tgid = std::stoi(value);
    } else if (key == "PPid") {
      c.ppid = std::stoi(value);
    } else if (key == "TracerPid") {
      c.tracer_pid = std::stoi(value);
    } else if (key == "Groups") {
      std::istringstream ids(value);
      for (unsigned g; ids >> g;) c.groups.push_back(g);
    } else if (key == "CapPrm") {
      c.cap_prm = std::stoull(value, nullptr, 16);
    } else if (key == "CapEff") {
      c.cap_eff = std::stoull(value, nullptr, 16);
    }
  }
  if (!uid || !gid || !pid) return std::nullopt;
  return c;
}

std::optional<ProcCreds> ReadProcCreds(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::optional<ProcCreds> c;
  try {
    c = ParseProcStatus(Slurp(dir + "/status"));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!c) return std::nullopt;
  struct stat st {};
  if (stat((dir + "/status").c_str(), &st) != 0) return std::nullopt;
  // task_dump_owner(): the files under /proc/PID of a non-dumpable task
  // belong to root (the owner of its user namespace); the directory itself
  // keeps the task's uid on current kernels.
  c->dumpable = !(st.st_uid == 0 && c->euid != 0);
  return c;
}

int ReadYamaScope() {
  // Read at most once a second: it is on every request's path, and an
  // administrator's change takes effect within that second.
  static std::atomic<int64_t> read_at{-1};  // ms on the steady clock; -1: never
  static std::atomic<int> cached{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  const int64_t last = read_at.load(std::memory_order_relaxed);
  if (last >= 0 && now - last < 1000) {
    return cached.load(std::memory_order_relaxed);
  }
  std::ifstream in("/proc/sys/kernel/yama/ptrace_scope");
  int scope = 0;
  if (!(in >> scope)) scope = 0;  // no Yama
  cached.store(scope, std::memory_order_relaxed);
  read_at.store(now, std::memory_order_relaxed);
  return scope;
}

bool IsDescendant(pid_t pid, pid_t ancestor) {
  for (int depth = 0; pid > 0 && depth < 4096; ++depth) {
    if (pid == ancestor) return true;
    auto c = ReadProcCreds(pid);
    if (!c) return false;
    pid = c->ppid;
  }
  return false;
}

namespace {

// The answer of tgkill or tkill with signal 0 (which sends nothing): the
// kernel found the thread, whether or not it would let us signal it.
bool Found(long rc) { return rc == 0 || errno == EPERM || errno == EACCES; }

// tgkill(tgid, tid, 0): the kernel finds thread `tid` and compares its
// process with `tgid` before it checks permission. One system call where
// /proc/TID/status costs three and formats a page.
bool InProcess(pid_t tid, pid_t tgid) { return Found(syscall(SYS_tgkill, tgid, tid, 0)); }

std::optional<pid_t> ReadTgid(pid_t tid) {
  const std::string status = Slurp("/proc/" + std::to_string(tid) + "/status");
  const size_t at = status.find("\nTgid:");
  if (at == std::string::npos) return std::nullopt;
  const long tgid = std::strtol(status.c_str() + at + 6, nullptr, 10);
  if (tgid <= 0) return std::nullopt;
  return static_cast<pid_t>(tgid);
}

}  // namespace

std::optional<pid_t> TgidOf(pid_t tid, pid_t guess) {
  if (tid <= 0) return std::nullopt;
  // The process found last time, if the kernel still says so (a tid
  // reused in another process fails the check); else the caller's guess;
  // else a process's first thread; else /proc.
  static std::mutex mu;
  static std::unordered_map<pid_t, pid_t> known;
  {
    std::lock_guard lock(mu);
    if (auto it = known.find(tid); it != known.end()) {
      if (InProcess(tid, it->second)) return it->second;
      known.erase(it);
    }
  }
  std::optional<pid_t> tgid;
  if (guess > 0 && guess != tid && InProcess(tid, guess)) {
    tgid = guess;
  } else {
    tgid = InProcess(tid, tid) ? std::optional<pid_t>(tid) : ReadTgid(tid);
  }
  if (!tgid) return std::nullopt;
  std::lock_guard lock(mu);
  if (known.size() >= 4096) known.clear();  // bounded; refilled as asked
  known[tid] = *tgid;
  return tgid;
}

std::optional<uint64_t> StartTime(pid_t tid, pid_t tgid) {
  std::istringstream rest(TaskStatFields(tgid, tid));
  std::string field;
  // Fields 3.. follow the comm; the start time is field 22.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return std::nullopt;
  }
  return std::stoull(field);
}

std::vector<pid_t> ListThreads(pid_t pid) {
  std::vector<pid_t> out;
  // readdir, not std::filesystem: no path built per entry (half the time
  // for a process of a thousand threads, and Reap lists watched processes
  // at every sweep).
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
  if (dir == nullptr) return out;
  while (const dirent* d = readdir(dir)) {
    char* end = nullptr;
    const long tid = std::strtol(d->d_name, &end, 10);
    if (*end == '\0' && tid > 0) out.push_back(static_cast<pid_t>(tid));
  }
  closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

bool ThreadAlive(pid_t tid) {
  if (tid <= 0) return false;
  // A thread other than its process's first is released as it ends (a
  // zombie only while a tracer has not waited for it): the kernel knowing
  // the tid is enough, one system call, which a sweep over a process's
  // thousand threads makes a thousand times.
  if (!InProcess(tid, tid)) return Found(syscall(SYS_tkill, tid, 0));
  // A first thread stays a zombie until its parent reaps it: the state,
  // field 3 of its own stat (/proc/TID/stat sums the times of every thread
  // of its process: O(threads) a read).
  const std::string fields = TaskStatFields(tid, tid);
  return !fields.empty() && fields[0] != 'Z' && fields[0] != 'X';
}

ThreadWhere WhereIs(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/syscall");
  if (!in) return {ThreadWhere::kGone, 0};
  std::string line;
  if (!std::getline(in, line) || line.rfind("running", 0) == 0) return {};
  // "NR ARGS... SP PC", or "-1 SP PC" outside a system call: PC last.
  const size_t last = line.find_last_of(' ');
  if (last == std::string::npos) return {};
  errno = 0;
  const uint64_t pc = std::strtoull(line.c_str() + last + 1, nullptr, 16);
  if (errno != 0) return {};
  return {ThreadWhere::kBlocked, pc};
}

std::optional<std::string> ReadMemory(pid_t pid, uint64_t address, uint32_t length) {
  if (length == 0) return std::nullopt;
  std::string value(length, '\0');
  iovec local{value.data(), value.size()};
  iovec remote{reinterpret_cast<void*>(address), value.size()};
  if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(value.size())) {
    return std::nullopt;
  }
  return value;
}

}  // namespace hwwatch::daemon::procfs
