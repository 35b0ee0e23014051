#include "tests/support/targets.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "arch/perf_event.h"

namespace hwwatch::testing {

Sleeper::Sleeper() : pid_(fork()) {
  if (pid_ == 0) {
    // Dies with the test, even one that aborts (a sanitizer report): a
    // leftover child would hold ctest's output pipe open forever.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) pause();
  }
}

void Sleeper::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, __WALL);
  pid_ = -1;
}

SymbolTarget::SymbolTarget(const std::string& kind) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    const std::string bin = std::string(getenv("HWWATCH_BIN_DIR")) + "/../tests/sym_target_" + kind;
    execl(bin.c_str(), bin.c_str(), nullptr);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  to_ = in[1];
  FILE* from = fdopen(out[0], "r");
  void *c = nullptr, *f = nullptr, *b = nullptr, *l = nullptr;
  if (std::fscanf(from, "counter %p count_up %p block %p lib_counter %p", &c, &f, &b, &l) == 4) {
    counter = reinterpret_cast<uint64_t>(c);
    count_up = reinterpret_cast<uint64_t>(f);
    block = reinterpret_cast<uint64_t>(b);
    lib_counter = reinterpret_cast<uint64_t>(l);
  }
  std::fclose(from);
}

SymbolTarget::~SymbolTarget() {
  if (to_ >= 0) close(to_);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

Execer::Execer() {
  int go[2];
  if (pipe(go) != 0) return;
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c;
    close(go[1]);
    (void)!read(go[0], &c, 1);
    execl("/bin/sleep", "sleep", "30", nullptr);
    _exit(127);
  }
  close(go[0]);
  go_ = go[1];
}

Execer::~Execer() {
  if (go_ >= 0) close(go_);
  if (pid_ <= 0) return;  // never kill(-1): every process
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

void Execer::Exec() { (void)!write(go_, "x", 1); }

pid_t TracerOf(pid_t pid) {
  auto field = [](pid_t p, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(p) + "/status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(key + ":", 0) == 0) return std::stoi(line.substr(key.size() + 1));
    }
    return -1;
  };
  const int tracer = field(pid, "TracerPid");
  return tracer <= 0 ? tracer : field(tracer, "Tgid");
}

namespace {

volatile uint64_t g_word;

unsigned CountOpens(arch::Access access, arch::PerfTarget target) {
  std::vector<arch::PerfBreakpoint> held;
  for (int i = 0; i < 16; ++i) {
    auto bp = arch::PerfBreakpoint::Open({reinterpret_cast<uint64_t>(&g_word), 8, access}, target);
    if (!bp) break;
    held.push_back(std::move(bp.value()));
  }
  return static_cast<unsigned>(held.size());
}

}  // namespace

unsigned KernelFreeOnThread(pid_t tid) {
  return CountOpens(arch::Access::kWrite, arch::PerfTarget::Thread(tid));
}

unsigned KernelFreeOnCpu(unsigned cpu) {
  return CountOpens(arch::Access::kReadWrite, arch::PerfTarget::Cpu(static_cast<int>(cpu)));
}

}  // namespace hwwatch::testing
