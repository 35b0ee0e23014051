#include "client/symbols.h"

#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

namespace hwwatch::client {

namespace {

const Dwfl_Callbacks kCallbacks = {
    dwfl_linux_proc_find_elf,
    dwfl_standard_find_debuginfo,
    nullptr,
    nullptr,
};

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%" PRIx64, v);
  return b;
}

struct Module {
  Dwfl_Module* mod = nullptr;
  std::string path;
};

}  // namespace

struct ProcessSymbols::Impl {
  Dwfl* dwfl = nullptr;
  std::vector<Module> modules;  // the executable first
  ~Impl() {
    if (dwfl != nullptr) dwfl_end(dwfl);
  }
};

ProcessSymbols::ProcessSymbols(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessSymbols::~ProcessSymbols() = default;

std::variant<std::unique_ptr<ProcessSymbols>, std::string> ProcessSymbols::Open(pid_t pid) {
  auto impl = std::make_unique<Impl>();
  impl->dwfl = dwfl_begin(&kCallbacks);
  if (impl->dwfl == nullptr) return std::string("libdwfl: ") + dwfl_errmsg(-1);
  dwfl_report_begin(impl->dwfl);
  const int r = dwfl_linux_proc_report(impl->dwfl, pid);
  dwfl_report_end(impl->dwfl, nullptr, nullptr);
  if (r != 0) {
    return "cannot read the mappings of process " + std::to_string(pid) + ": " +
           (r > 0 ? std::strerror(r) : dwfl_errmsg(-1));
  }
  std::error_code ec;
  const std::string exe =
      std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec).string();
  dwfl_getmodules(
      impl->dwfl,
      [](Dwfl_Module* mod, void**, const char* name, Dwarf_Addr, void* arg) -> int {
        auto* self = static_cast<Impl*>(arg);
        self->modules.push_back({mod, name != nullptr ? name : ""});
        return DWARF_CB_OK;
      },
      impl.get(), 0);
  std::stable_partition(impl->modules.begin(), impl->modules.end(),
                        [&](const Module& m) { return m.path == exe; });
  return std::unique_ptr<ProcessSymbols>(new ProcessSymbols(std::move(impl)));
}

namespace {

bool HasSymtab(Dwfl_Module* mod) {
  GElf_Addr bias = 0;
  Elf* elf = dwfl_module_getelf(mod, &bias);
  if (elf == nullptr) return false;
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn)) != nullptr;) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) != nullptr && sh.sh_type == SHT_SYMTAB) return true;
  }
  return false;
}

// The definition of `name` in `m` (its .symtab, else .dynsym), or an error
// for a thread-local one.
std::optional<std::variant<Symbol, std::string>> Lookup(const Module& m, const std::string& name) {
  const int n = dwfl_module_getsymtab(m.mod);
  for (int i = 1; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    const char* sname = dwfl_module_getsym_info(m.mod, i, &sym, &addr, nullptr, nullptr, nullptr);
    if (sname == nullptr || name != sname || sym.st_shndx == SHN_UNDEF) continue;
    const int type = GELF_ST_TYPE(sym.st_info);
    if (type == STT_TLS) {
      return std::string(
          "'" + name + "' in " + Basename(m.path) +
          " is thread-local: each thread has its own copy, so it has no one address");
    }
    if (type != STT_OBJECT && type != STT_FUNC && type != STT_GNU_IFUNC && type != STT_COMMON) {
      continue;
    }
    return Symbol{name, m.path, addr, sym.st_size, type == STT_FUNC || type == STT_GNU_IFUNC};
  }
  return std::nullopt;
}

}  // namespace

std::variant<Symbol, std::string> ProcessSymbols::Find(const std::string& spec) const {
  std::string lib, name = spec;
  if (const size_t colon = spec.find(':'); colon != std::string::npos) {
    lib = spec.substr(0, colon);
    name = spec.substr(colon + 1);
  }
  if (name.empty()) return std::string("no symbol name in '" + spec + "'");
  std::vector<std::string> searched;
  bool stripped = false;
  for (const Module& m : impl_->modules) {
    if (!lib.empty() && Basename(m.path).rfind(lib, 0) != 0) continue;
    searched.push_back(Basename(m.path));
    // dwfl falls back to .dynsym; a file without .symtab has lost its
    // non-exported names (said of the first file searched: system
    // libraries are usually stripped, and that is not news).
    if (searched.size() == 1 && !HasSymtab(m.mod)) stripped = true;
    auto found = Lookup(m, name);
    if (!found) continue;
    if (auto* sym = std::get_if<Symbol>(&*found);
        sym != nullptr && !sym->function && &m != &impl_->modules.front()) {
      // A library's variable the executable refers to directly lives in
      // the executable (a copy relocation): that copy is the one in use.
      if (auto copy = Lookup(impl_->modules.front(), name)) {
        if (auto* c = std::get_if<Symbol>(&*copy); c != nullptr && !c->function) return *c;
      }
    }
    return *found;
  }
  std::string where;
  for (const std::string& s : searched) where += (where.empty() ? "" : ", ") + s;
  if (searched.empty()) return "no mapped file of the process matches '" + lib + "'";
  std::string out = "no symbol '" + name + "' in " + where;
  if (stripped) {
    out += " (" + searched.front() +
           " is stripped: its symbol table is gone; rebuild without -s, or give ADDR)";
  }
  return out;
}

std::string ProcessSymbols::Describe(uint64_t address, bool before) const {
  Dwfl_Module* m = dwfl_addrmodule(impl_->dwfl, address);
  if (m == nullptr) return "";
  GElf_Off off = 0;
  GElf_Sym sym;
  const char* name = dwfl_module_addrinfo(m, address, &off, &sym, nullptr, nullptr, nullptr);
  if (name == nullptr) return "";
  // Appended piece by piece: GCC 12 at -O3 warns falsely (-Wrestrict) on
  // `" (" + std::string + ...` chains.
  std::string out = name;
  if (off != 0) out.append("+").append(Hex(off));
  const uint64_t at = before && address > 0 ? address - 1 : address;
  if (Dwfl_Line* line = dwfl_module_getsrc(m, at)) {
    int lineno = 0;
    if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
      out.append(" (")
          .append(Basename(file))
          .append(":")
          .append(std::to_string(lineno))
          .append(")");
    }
  }
  return out;
}

}  // namespace hwwatch::client
