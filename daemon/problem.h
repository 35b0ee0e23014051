// The daemon's one error type. Codes name what went wrong in the daemon's
// own terms; the service maps them 1:1 to gRPC status codes at its edge.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace hwwatch::daemon {

enum class Code {
  kInvalidArgument,     // the request can never succeed as written
  kNotFound,            // no such target or reservation
  kPermissionDenied,    // the caller may not do this
  kResourceExhausted,   // no slot, quota reached, held outside the daemon
  kFailedPrecondition,  // possible, but not in the target's current state
  kUnimplemented,
  kInternal,
};

struct Problem {
  Code code = Code::kInternal;
  std::string message;  // one sentence for the caller
};

// A value or a Problem.
template <class T>
class Outcome {
 public:
  Outcome(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Outcome(Problem problem) : v_(std::move(problem)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Problem& problem() const { return std::get<1>(v_); }

 private:
  std::variant<T, Problem> v_;
};

inline Problem Invalid(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }

}  // namespace hwwatch::daemon
