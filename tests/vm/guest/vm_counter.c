/* The program watched by `hwwatch watch` inside the emulated machine:
   prints its pid and the address of `counter`, then increments it every
   50 ms in count_up() for up to 600 s (the emulated arm64 machine is slow; the guest kills it when
   done). Built with -g, not PIE. */
#include <stdio.h>
#include <unistd.h>

volatile unsigned counter;

__attribute__((noinline)) void count_up(void) { counter = counter + 1; }

int main(void) {
  printf("%d %p\n", (int)getpid(), (void*)&counter);
  fflush(stdout);
  for (int i = 0; i < 12000; ++i) {
    count_up();
    usleep(50000);
  }
  return 0;
}
