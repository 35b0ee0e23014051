// Test support: a GoogleTest fixture with the real hwwatchd on a temporary
// socket (tests/support/process.h) and a client connected to it, for the
// tests that need both before they start.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/client.h"
#include "tests/support/process.h"

namespace hwwatch::testing {

// The daemon starts in the constructor, so members of a derived fixture
// (targets to watch, forked before the client's threads start) come after
// it; SetUp() requires it running and connects client(). A fixture that
// needs daemon flags passes them to the constructor.
class DaemonTest : public ::testing::Test {
 protected:
  explicit DaemonTest(std::vector<std::string> daemon_args = {})
      : daemon_(std::move(daemon_args)) {}

  void SetUp() override;

  DaemonProcess& daemon() { return daemon_; }
  client::Client& client() { return *client_; }
  // Another connection (a session of its own); null, and the test failed,
  // when it could not connect.
  std::unique_ptr<client::Client> Connect();

  DaemonProcess daemon_;
  std::unique_ptr<client::Client> client_;
};

}  // namespace hwwatch::testing
