#include "tests/support/daemon_fixture.h"

namespace hwwatch::testing {

void DaemonTest::SetUp() {
  ASSERT_TRUE(daemon_.running()) << daemon_.Log();
  client_ = Connect();
  ASSERT_TRUE(client_);
}

std::unique_ptr<client::Client> DaemonTest::Connect() {
  auto c = client::Client::Connect(daemon_.socket());
  EXPECT_TRUE(c) << c.error().ToString();
  return c ? std::move(c.value()) : nullptr;
}

}  // namespace hwwatch::testing
