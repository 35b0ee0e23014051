#include "tests/bench/json.h"

#include <google/protobuf/util/json_util.h>

namespace hwwatch::bench {

std::string ToJson(const Json& o) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(o, &out);
  return out + "\n";
}

}  // namespace hwwatch::bench
