/* A program for the symbol tests: prints where its globals really are
 * (as the running process sees them), then writes them until stdin ends. */
#include <stdio.h>
#include <unistd.h>

extern long lib_counter;
void lib_bump(void);

int counter;
char block[32];

__attribute__((noinline)) void count_up(void) {
  counter++;
  block[0]++;
}

int main(void) {
  printf("counter %p count_up %p block %p lib_counter %p\n", (void*)&counter, (void*)&count_up,
         (void*)block, (void*)&lib_counter);
  fflush(stdout);
  char c;
  while (read(0, &c, 1) == 1) {
    count_up();
    lib_bump();
  }
  return 0;
}
