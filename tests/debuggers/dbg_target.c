/* A small program for the debugger tests (tests/debuggers/): it writes
 * `counter` and other globals in ways the tests then watch.
 *   dbg_target loop      counter = 1..5 from main
 *   dbg_target thread    a thread started after ready() writes counter 1..2
 *   dbg_target outside   other1 = 1, other2 = 2 (GDB's own watchpoints), then
 *                        buf (24 bytes: three x86 registers) and counter
 *   dbg_target writer    counter += 1 every millisecond until killed
 * ready() is where the tests stop to set their watches. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

volatile long counter;
volatile int other1, other2;
struct triple {
  long a, b, c;
};
volatile struct triple buf __attribute__((aligned(32)));

__attribute__((noinline)) void ready(void) { __asm__ volatile("" ::: "memory"); }

static void count_to(long n) {
  for (long i = 0; i < n; i++) {
    counter = counter + 1; /* the write */
  }
}

static void *worker(void *arg) {
  (void)arg;
  count_to(2);
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "loop";
  if (strcmp(mode, "writer") == 0) {
    printf("writer ready\n");
    fflush(stdout);
    for (;;) {
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
      counter = counter + 1;
    }
  }
  ready();
  if (strcmp(mode, "thread") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
  } else if (strcmp(mode, "outside") == 0) {
    other1 = 1;
    other2 = 2;
    buf.b = 7;
    count_to(1);
  } else {
    count_to(5);
  }
  printf("counter %ld\n", counter);
  return 0;
}
