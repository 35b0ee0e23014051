// A multi-threaded process to watch: starts with two extra threads, then
// obeys its stdin: 'n' starts a thread and prints "tid N", 'x' ends the
// newest one it started and prints "exited N". EOF ends it.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

namespace {

struct Worker {
  std::atomic<bool> stop{false};
  std::atomic<pid_t> tid{0};
  std::thread thread;
};

std::unique_ptr<Worker> Start() {
  auto w = std::make_unique<Worker>();
  Worker* raw = w.get();
  w->thread = std::thread([raw] {
    raw->tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!raw->stop) usleep(10000);
  });
  while (w->tid == 0) usleep(1000);
  return w;
}

}  // namespace

int main() {
  std::vector<std::unique_ptr<Worker>> workers;
  workers.push_back(Start());
  workers.push_back(Start());
  std::printf("ready\n");
  std::fflush(stdout);
  for (int c; (c = std::getchar()) != EOF;) {
    if (c == 'n') {
      workers.push_back(Start());
      std::printf("tid %d\n", workers.back()->tid.load());
    } else if (c == 'x' && workers.size() > 2) {
      const pid_t tid = workers.back()->tid;
      workers.back()->stop = true;
      workers.back()->thread.join();
      workers.pop_back();
      std::printf("exited %d\n", tid);
    }
    std::fflush(stdout);
  }
  for (auto& w : workers) {
    w->stop = true;
    w->thread.join();
  }
  return 0;
}
