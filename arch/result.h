// A small value-or-error type for arch/. arch/ depends on libc and the C++
// standard library only (it is compiled statically into emulated-machine test
// programs), so failures are returned as values and the caller logs them.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace hwwatch::arch {

struct Error {
  int code = 0;         // errno value when a system call failed, else 0
  std::string message;  // what failed, including strerror(code) when set

  bool Is(int errno_value) const { return code == errno_value; }
};

// Builds an Error from the current errno: "<what>: <strerror(errno)>".
inline Error ErrnoError(const std::string& what, int err = errno) {
  return Error{err, what + ": " + std::strerror(err)};
}

inline Error PlainError(std::string message) { return Error{0, std::move(message)}; }

// A value or an error; the error type is arch's Error unless a layer above
// brings its own (the daemon's Result is this with its Problem).
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, E> v_;
};

// Success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Status OkStatus() { return Status(); }

}  // namespace hwwatch::arch
