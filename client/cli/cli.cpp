#include "client/cli/cli.h"

#include <google/protobuf/util/json_util.h>

#include <cstdio>

namespace hwwatch::cli {

std::unique_ptr<client::Client> ConnectOrReport(const GlobalOptions& g, int* exit_code) {
  auto c = client::Client::Connect(g.socket);
  if (!c) {
    *exit_code = ReportError(c.error());
    return nullptr;
  }
  return std::move(c.value());
}

int ReportError(const client::Error& e) {
  std::fprintf(stderr, "hwwatch: %s\n", e.ToString().c_str());
  return e.unreachable ? kUnreachable : kRefused;
}

void PrintJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.add_whitespace = false;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(m, &out, opts);
  if (!status.ok()) {
    std::fprintf(stderr, "hwwatch: cannot print JSON: %s\n", status.ToString().c_str());
    return;
  }
  std::printf("%s\n", out.c_str());
}

}  // namespace hwwatch::cli
