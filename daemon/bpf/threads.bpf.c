// The thread lister: a task iterator over one process's threads (the
// daemon sets the process when it creates the iterator, Linux 6.1 and
// later) that writes each thread's id and the CPU it last ran on. One pass
// of the kernel's own thread list, where /proc/PID/task builds a directory
// entry per thread; the CPU lets the daemon open each thread's events from
// that CPU, where installing an event needs no interrupt of another CPU.
// Layout shared with the daemon: threads_abi.h.
// clang-format off
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
// clang-format on

#include "threads_abi.h"

char LICENSE[] SEC("license") = "GPL";

// The kernel's types, located in the running kernel's BTF at load (CO-RE).
struct seq_file;
struct bpf_iter_meta {
  struct seq_file* seq;
} __attribute__((preserve_access_index));
struct thread_info {
  unsigned int cpu;
} __attribute__((preserve_access_index));
struct task_struct {
  struct thread_info thread_info;
  int pid;
} __attribute__((preserve_access_index));
struct bpf_iter__task {
  struct bpf_iter_meta* meta;
  struct task_struct* task;
} __attribute__((preserve_access_index));

SEC("iter/task")
int list_threads(struct bpf_iter__task* ctx) {
  struct task_struct* task = ctx->task;
  if (!task) return 0;
  struct hw_thread t = {};
  t.tid = (hw_thread_u32)BPF_CORE_READ(task, pid);
  t.cpu = BPF_CORE_READ(task, thread_info.cpu);
  bpf_seq_write(ctx->meta->seq, &t, sizeof t);
  return 0;
}
