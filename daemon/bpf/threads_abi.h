// What the thread lister (threads.bpf.c) writes for each thread, read by
// daemon/thread_lister.cpp. Plain C, fixed-width fields.
#pragma once

#ifdef __bpf__
typedef unsigned int hw_thread_u32;
#else
#include <stdint.h>
typedef uint32_t hw_thread_u32;
#endif

struct hw_thread {
  hw_thread_u32 tid;
  hw_thread_u32 cpu;  // the CPU it last ran on
};
