#include "daemon/authz.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>

namespace hwwatch::daemon {

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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

Decision MayPtrace(const ProcCreds& caller, const ProcCreds& target, int yama_scope,
                   const YamaRelation& relation) {
  const bool cap = caller.HasCap(kCapSysPtrace);
  // A thread may always look at its own thread group.
  if (caller.tgid != 0 && caller.tgid == target.tgid) return {true, "own process"};
  // __ptrace_may_access, REALCREDS: the caller's real ids must equal all of
  // the target's real, effective and saved ids, or the caller needs
  // CAP_SYS_PTRACE.
  const bool same_ids = caller.ruid == target.ruid && caller.ruid == target.euid &&
                        caller.ruid == target.suid && caller.rgid == target.rgid &&
                        caller.rgid == target.egid && caller.rgid == target.sgid;
  if (!same_ids && !cap) {
    return {false,
            "the target runs with other user or group ids (e.g. another user's or a "
            "setuid program) and the caller lacks CAP_SYS_PTRACE"};
  }
  if (!target.dumpable && !cap) {
    return {false,
            "the target is not dumpable (PR_SET_DUMPABLE 0, or it changed credentials)"
            " and the caller lacks CAP_SYS_PTRACE"};
  }
  // commoncap: the target may not hold permitted capabilities the caller
  // does not have, unless the caller has CAP_SYS_PTRACE.
  if ((target.cap_prm & ~caller.cap_prm) != 0 && !cap) {
    return {false, "the target holds capabilities the caller does not"};
  }
  switch (yama_scope) {
    case 0:
      break;
    case 1:
      if (!cap && !relation.target_is_descendant && !relation.declared_tracer) {
        return {false,
                "Yama ptrace_scope 1: the target is not a descendant of the caller (an"
                " exception the target made with PR_SET_PTRACER is not visible to hwwatchd"
                " and is not honoured; CAP_SYS_PTRACE is)"};
      }
      break;
    case 2:
      if (!cap) return {false, "Yama ptrace_scope 2: only CAP_SYS_PTRACE may attach"};
      break;
    default:
      return {false, "Yama ptrace_scope 3: no process may be attached to"};
  }
  return {true, cap ? "the caller has CAP_SYS_PTRACE" : "same user"};
}

}  // namespace hwwatch::daemon
