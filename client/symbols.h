// Symbols of a running process, through elfutils' libdwfl: its executable
// and shared libraries as /proc/PID/maps shows them (load bias applied,
// PIE or not), their symbol tables and, where there is debug info, source
// lines. Used to turn `--symbol counter` into an address and a length, and
// hit addresses into `count_up+0x12 (counter.c:9)`.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <variant>

namespace hwwatch::client {

struct Symbol {
  std::string name;
  std::string module;    // the file it was found in
  uint64_t address = 0;  // in the process (load bias applied)
  uint64_t size = 0;
  bool function = false;  // a function (else a data object)
};

class ProcessSymbols {
 public:
  // Reads the modules mapped in `pid`; an error sentence on failure.
  static std::variant<std::unique_ptr<ProcessSymbols>, std::string> Open(pid_t pid);
  ~ProcessSymbols();
  ProcessSymbols(const ProcessSymbols&) = delete;
  ProcessSymbols& operator=(const ProcessSymbols&) = delete;

  // "NAME" (the executable first, then every library) or "LIB:NAME" (the
  // library whose file name starts with LIB, e.g. "libc:environ"). Data
  // objects and functions; an error sentence when there is none (naming a
  // stripped file when the symbol table is gone).
  std::variant<Symbol, std::string> Find(const std::string& spec) const;

  // "count_up+0x12 (counter.c:9)", "count_up+0x12" without debug info, or
  // "" when no symbol covers `address`. `before`: the line of the
  // instruction before `address` (x86 reports a data hit after it).
  std::string Describe(uint64_t address, bool before = false) const;

 private:
  struct Impl;
  explicit ProcessSymbols(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hwwatch::client
