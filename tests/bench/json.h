// The benches' --json output: one object built with nlohmann::json (Debian's
// nlohmann-json3-dev, header-only) and printed by it, so no bench writes
// JSON by hand. (Not protobuf's Struct here: the bench also runs in the
// ThreadSanitizer tree, where protobuf's Map, inlined from its headers
// into instrumented code beside the uninstrumented library, crashed.)
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

namespace hwwatch::bench {

using Json = nlohmann::json;

template <class T>
requires std::is_arithmetic_v<T>
inline void Put(Json& o, const std::string& key, T v) { o[key] = v; }
inline void Put(Json& o, const std::string& key, const std::string& v) { o[key] = v; }
inline void Put(Json& o, const std::string& key, const char* v) { o[key] = std::string(v); }

// A figure that is a positive number, or null when it was not measured.
inline void PutMeasured(Json& o, const std::string& key, double v) {
  o[key] = v > 0 ? Json(v) : Json(nullptr);
}

// The object under `key` (made empty if it was not there).
inline Json& Child(Json& o, const std::string& key) {
  Json& c = o[key];
  if (!c.is_object()) c = Json::object();
  return c;
}

// A new object appended to the list under `key`.
inline Json& Append(Json& o, const std::string& key) {
  Json& list = o[key];
  if (!list.is_array()) list = Json::array();
  list.push_back(Json::object());
  return list.back();
}

// One line of compact JSON.
inline std::string ToJson(const Json& o) { return o.dump() + "\n"; }

}  // namespace hwwatch::bench
