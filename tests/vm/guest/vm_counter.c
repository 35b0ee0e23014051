/* The program watched by `hwwatch watch` inside the emulated machine:
   prints its pid and the address of `counter`, then increments it in
   count_up() every PERIOD ms (argv[1], default 50) for up to 600 s (the
   emulated arm64 machine is slow; the guest kills it when done). Built
   with -g, not PIE. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned counter;

__attribute__((noinline)) void count_up(void) { counter = counter + 1; }

int main(int argc, char** argv) {
  const int period_ms = argc > 1 ? atoi(argv[1]) : 50;
  const int rounds = period_ms > 0 ? 600000 / period_ms : 12000;
  printf("%d %p\n", (int)getpid(), (void*)&counter);
  fflush(stdout);
  for (int i = 0; i < rounds; ++i) {
    count_up();
    usleep((useconds_t)(period_ms > 0 ? period_ms : 50) * 1000);
  }
  return 0;
}
