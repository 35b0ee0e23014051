/* The program the bpf_capture case watches: prints its pid and the address
   of `value`, then adds one to it at each SIGUSR1 and at no other time, so
   every write comes after the watch is armed and each hit's old -> new is
   known exactly: k-1 -> k. Built static for the guest; ends after 120 s. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

volatile unsigned value;

__attribute__((noinline)) void add_one(void) { value = value + 1; }

int main(void) {
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  alarm(120);
  printf("%d %p\n", (int)getpid(), (void*)&value);
  fflush(stdout);
  for (;;) {
    int sig = 0;
    if (sigwait(&usr1, &sig) == 0) add_one();
  }
}
