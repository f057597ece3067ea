#include "common/http/fetch.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_test_server.h"
#include "tests/testing/status_matchers.h"

namespace mm::http {
namespace {

using ::mm::testing::HttpTestServer;
using ::mm::testing::StatusIs;
using ::testing::HasSubstr;

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, HttpTestServer::Start());
    loop_ = TransferLoop::Create({});
  }
  Request At(const std::string& path) {
    Request request;
    request.url = server_->Url(path);
    request.stall_timeout = absl::Seconds(10);
    return request;
  }

  std::unique_ptr<HttpTestServer> server_;
  std::unique_ptr<TransferLoop> loop_;
};

TEST_F(FetchTest, ReturnsTheBodyAndHeaders) {
  server_->SetFile("/api/info", {.body = R"({"id": "o/n"})",
                                 .etag = "\"abc\"",
                                 .content_type = "application/json"});
  ASSERT_OK_AND_ASSIGN(FetchResult result,
                       Fetch(*loop_, At("/api/info"), 1024));
  EXPECT_EQ(result.head.status, 200);
  EXPECT_EQ(result.body, R"({"id": "o/n"})");
  EXPECT_EQ(result.head.Header("content-type"), "application/json");
}

TEST_F(FetchTest, AnErrorStatusIsAResponseForTheCallerToRead) {
  ASSERT_OK_AND_ASSIGN(FetchResult result, Fetch(*loop_, At("/missing"), 1024));
  EXPECT_EQ(result.head.status, 404);
}

TEST_F(FetchTest, ABodyOverTheCapIsRefused) {
  server_->SetFile("/big", {.body = std::string(4096, 'x')});
  EXPECT_THAT(Fetch(*loop_, At("/big"), 1000),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("larger than 1000 bytes")));
}

TEST_F(FetchTest, NoServerIsUnavailable) {
  const std::string url = server_->Url("/gone");
  server_->Stop();
  Request request;
  request.url = url;
  EXPECT_THAT(Fetch(*loop_, request, 1024),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("/gone")));
}

TEST_F(FetchTest, TheAddressPolicyRefusesLoopback) {
  server_->SetFile("/api/info", {.body = "{}"});
  Request request = At("/api/info");
  request.address_policy = std::make_shared<const AddressPolicy>();
  EXPECT_THAT(Fetch(*loop_, request, 1024),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_TRUE(server_->RequestsFor("/api/info").empty());
}

}  // namespace
}  // namespace mm::http
