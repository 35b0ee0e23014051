// Test support for the hwwatch CLI: run it against a daemon's socket and
// read its --json output back as the proto it prints.
#pragma once

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/support/process.h"

namespace hwwatch::testing {

// `hwwatch --socket SOCKET args...` from BinDir(), bounded as RunCommand.
inline CommandResult Cli(const std::string& socket, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinDir() + "/hwwatch", "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

// One message from protobuf's JSON mapping; a parse failure fails the test.
template <class M>
M ParseJson(const std::string& text) {
  M m;
  auto st = google::protobuf::util::JsonStringToMessage(text, &m);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << text;
  return m;
}

}  // namespace hwwatch::testing
