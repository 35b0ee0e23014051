// The benches' --json output: one object built on protobuf's Struct and
// printed by protobuf's JSON mapping, so no bench writes JSON by hand.
#pragma once

#include <google/protobuf/struct.pb.h>

#include <string>

namespace hwwatch::bench {

using Json = google::protobuf::Struct;

inline void Put(Json& o, const std::string& key, double v) {
  (*o.mutable_fields())[key].set_number_value(v);
}
inline void Put(Json& o, const std::string& key, const std::string& v) {
  (*o.mutable_fields())[key].set_string_value(v);
}
inline void Put(Json& o, const std::string& key, const char* v) { Put(o, key, std::string(v)); }

// A figure that is a positive number, or null when it was not measured.
inline void PutMeasured(Json& o, const std::string& key, double v) {
  if (v > 0) {
    Put(o, key, v);
  } else {
    (*o.mutable_fields())[key].set_null_value(google::protobuf::NULL_VALUE);
  }
}

// The object under `key` (made empty if it was not there).
inline Json& Child(Json& o, const std::string& key) {
  return *(*o.mutable_fields())[key].mutable_struct_value();
}

// A new object appended to the list under `key`.
inline Json& Append(Json& o, const std::string& key) {
  return *(*o.mutable_fields())[key].mutable_list_value()->add_values()->mutable_struct_value();
}

// One line of compact JSON.
std::string ToJson(const Json& o);

}  // namespace hwwatch::bench
