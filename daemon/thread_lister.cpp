#include "daemon/thread_lister.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "arch/scoped_fd.h"
#include "daemon/bpf/threads_skel.h"
#include "daemon/procfs.h"

namespace hwwatch::daemon {

std::unique_ptr<ThreadLister> ThreadLister::Load(std::string& why) {
  hwwatch_threads* skel = hwwatch_threads::open_and_load();
  if (skel == nullptr) {
    why = std::string("the kernel refused the thread lister (") + std::strerror(errno) + ")";
    return nullptr;
  }
  std::unique_ptr<ThreadLister> lister(new ThreadLister(skel));
  // Kernels before 6.1 load the program but ignore the process and list
  // every task: each listed thread must be this process's.
  auto own = lister->List(getpid());
  const bool ours = own && !own->empty() && std::all_of(own->begin(), own->end(), [](auto& t) {
                      return procfs::TgidOf(t.tid, getpid()) == getpid();
                    });
  if (!ours) {
    why = "this kernel cannot iterate one process's threads (Linux 6.1 and later)";
    return nullptr;
  }
  return lister;
}

ThreadLister::~ThreadLister() { hwwatch_threads::destroy(skel_); }

std::optional<std::vector<ThreadOnCpu>> ThreadLister::List(pid_t pid) const {
  union bpf_iter_link_info info;
  std::memset(&info, 0, sizeof info);
  info.task.pid = static_cast<__u32>(pid);
  LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info, .link_info_len = sizeof info);
  bpf_link* link = bpf_program__attach_iter(skel_->progs.list_threads, &opts);
  if (link == nullptr) return std::nullopt;
  arch::ScopedFd iter(bpf_iter_create(bpf_link__fd(link)));
  bpf_link__destroy(link);  // the iterator holds what it needs
  if (iter.get() < 0) return std::nullopt;
  std::vector<hw_thread> raw(256);
  size_t bytes = 0;
  for (;;) {
    if (bytes == raw.size() * sizeof(hw_thread)) raw.resize(raw.size() * 2);
    const ssize_t n = read(iter.get(), reinterpret_cast<char*>(raw.data()) + bytes,
                           raw.size() * sizeof(hw_thread) - bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    bytes += static_cast<size_t>(n);
  }
  const size_t got = bytes / sizeof(hw_thread);
  std::vector<ThreadOnCpu> out;
  out.reserve(got);
  for (size_t i = 0; i < got; ++i) {
    out.push_back({static_cast<pid_t>(raw[i].tid), static_cast<int>(raw[i].cpu)});
  }
  std::sort(out.begin(), out.end(),
            [](const ThreadOnCpu& a, const ThreadOnCpu& b) { return a.tid < b.tid; });
  // Nothing: no such process, or `pid` is not a process's first thread
  // (the iterator takes processes only). /proc tells these apart.
  if (out.empty()) return std::nullopt;
  return out;
}

}  // namespace hwwatch::daemon
