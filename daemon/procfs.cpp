#include "daemon/procfs.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace hwwatch::daemon {

std::vector<pid_t> ListThreads(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& d :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const std::string name = d.path().filename().string();
    char* end = nullptr;
    const long tid = std::strtol(name.c_str(), &end, 10);
    if (*end == '\0' && tid > 0) out.push_back(static_cast<pid_t>(tid));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool ThreadAlive(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' &&
         line[paren + 2] != 'X';
}

}  // namespace hwwatch::daemon
