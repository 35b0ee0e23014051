// Example of the client library: start a child process, watch one of its
// variables through hwwatchd, print who wrote it and what it became.
//
//   hwwatch-example-watch-child [HITS]      (socket: $HWWATCH_SOCKET or the default)
//
// Exit status 0 after HITS hits (default 5), 1 when they did not come.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "client/client.h"

namespace {

// The child's copy of this variable (same address after fork) is watched.
volatile int g_counter;

[[noreturn]] void Child(int go) {
  char c;
  if (read(go, &c, 1) != 1) _exit(1);  // wait until the watch is armed
  for (int i = 0; i < 500; ++i) {
    g_counter = g_counter + 1;
    usleep(20000);
  }
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  namespace v1 = hwwatch::v1;
  const int want = argc > 1 ? std::atoi(argv[1]) : 5;
  int go[2];
  if (pipe(go) != 0) return 1;
  const pid_t child = fork();
  if (child == 0) Child(go[0]);

  auto client = hwwatch::client::Client::Connect(hwwatch::client::DefaultSocketPath());
  if (!client) {
    std::fprintf(stderr, "%s\n", client.error().ToString().c_str());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 1;
  }
  hwwatch::client::Client& c = *client.value();
  // Follow first, so that not even the first hit is missed.
  auto events = c.Follow({}, /*lifecycle=*/true);

  v1::ReserveRequest req;
  req.mutable_target()->set_pid(child);
  req.mutable_watch()->set_address(reinterpret_cast<uint64_t>(&g_counter));
  req.mutable_watch()->set_length(sizeof g_counter);
  req.mutable_watch()->set_access(v1::ACCESS_WRITE);
  req.mutable_watch()->set_symbol("g_counter");
  req.set_capture_value(true);
  auto watch = c.Hold(req);  // released when `watch` goes
  if (!watch) {
    std::fprintf(stderr, "reserve: %s\n", watch.error().ToString().c_str());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 1;
  }
  std::printf("watching g_counter of pid %d (reservation %" PRIu64 ", %u register(s))\n", child,
              watch->id(), watch->info().weight());
  std::fflush(stdout);
  (void)!write(go[1], "g", 1);

  int hits = 0;
  events->ForEach([&](const v1::Event& e) {
    if (e.has_hit()) {
      int value = 0;
      std::memcpy(&value, e.hit().value().data(), std::min(sizeof value, e.hit().value().size()));
      std::printf("hit %d: tid %d ip %#" PRIx64 " wrote g_counter = %d\n", ++hits, e.hit().tid(),
                  e.hit().ip(), value);
      std::fflush(stdout);
      return hits < want;
    }
    // The child ended or the watch went away: nothing more will come.
    return !(e.has_exited() || e.has_released());
  });
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return hits >= want ? 0 : 1;
}
