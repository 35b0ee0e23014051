#include "arch/capabilities.h"

#include <sys/utsname.h>

#include <charconv>
#include <fstream>

namespace hwwatch::arch {

std::string_view ArchName(Arch a) {
  switch (a) {
    case Arch::kX86_64:
      return "x86_64";
    case Arch::kAarch64:
      return "aarch64";
    case Arch::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view AccessName(Access a) {
  switch (a) {
    case Access::kWrite:
      return "write";
    case Access::kReadWrite:
      return "read_write";
    case Access::kExecute:
      return "execute";
    case Access::kRead:
      return "read";
  }
  return "unknown";
}

const SlotPool* HostCapabilities::PoolFor(SlotType t) const {
  for (const SlotPool& p : pools) {
    for (SlotType pt : p.types) {
      if (pt == t) return &p;
    }
  }
  return nullptr;
}

HostCapabilities X86_64Capabilities(unsigned cpus) {
  HostCapabilities caps;
  caps.arch = Arch::kX86_64;
  caps.cpus = cpus;
  caps.pools = {SlotPool{{SlotType::kData, SlotType::kInst}, 4}};
  caps.rules = {
      AccessRule{Access::kWrite, {1, 2, 4, 8}, true, 0},
      AccessRule{Access::kReadWrite, {1, 2, 4, 8}, true, 0},
      // The hardware matches the first byte of an instruction (LEN=00); the
      // kernel's perf interface spells that as bp_len = sizeof(long).
      AccessRule{Access::kExecute, {1}, false, 0},
  };
  return caps;
}

unsigned ParseCpuListCount(const std::string& list) {
  unsigned highest = 0;
  bool any = false;
  const char* p = list.data();
  const char* end = list.data() + list.size();
  while (p < end && *p != '\n') {
    unsigned a = 0;
    auto r = std::from_chars(p, end, a);
    if (r.ec != std::errc()) return 0;
    p = r.ptr;
    unsigned b = a;
    if (p < end && *p == '-') {
      r = std::from_chars(p + 1, end, b);
      if (r.ec != std::errc() || b < a) return 0;
      p = r.ptr;
    }
    highest = std::max(highest, b);
    any = true;
    if (p < end && *p == ',') {
      ++p;
    } else if (p < end && *p != '\n') {
      return 0;
    }
  }
  return any ? highest + 1 : 0;
}

unsigned PossibleCpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string line;
  if (!std::getline(in, line)) return 0;
  return ParseCpuListCount(line);
}

HostCapabilities DiscoverHost() {
  HostCapabilities caps;
  const unsigned cpus = PossibleCpus();
  if constexpr (kHostArch == Arch::kX86_64) {
    caps = X86_64Capabilities(cpus);
  } else {
    caps.arch = kHostArch;
    caps.cpus = cpus;
    caps.error = "slot discovery for this architecture is not built yet";
  }
  struct utsname u {};
  if (uname(&u) == 0) caps.kernel_release = u.release;
  return caps;
}

}  // namespace hwwatch::arch
