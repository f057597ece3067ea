// Tests for the URL checks done before a download is queued.
#include "common/http/url.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::http {
namespace {

using ::mm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(ParseHttpUrlTest, HttpAndHttpsWithDefaultPorts) {
  ASSERT_OK_AND_ASSIGN(HttpUrl http,
                       ParseHttpUrl("http://example.com/a/b.bin?x=1", "url"));
  EXPECT_EQ(http.scheme, "http");
  EXPECT_EQ(http.host, "example.com");
  EXPECT_EQ(http.port, 80);

  ASSERT_OK_AND_ASSIGN(HttpUrl https,
                       ParseHttpUrl("https://example.com", "url"));
  EXPECT_EQ(https.scheme, "https");
  EXPECT_EQ(https.host, "example.com");
  EXPECT_EQ(https.port, 443);
}

TEST(ParseHttpUrlTest, ExplicitPorts) {
  ASSERT_OK_AND_ASSIGN(HttpUrl url,
                       ParseHttpUrl("http://example.com:8080/x", "url"));
  EXPECT_EQ(url.port, 8080);
  ASSERT_OK_AND_ASSIGN(HttpUrl tls,
                       ParseHttpUrl("https://10.0.0.1:8443/x", "url"));
  EXPECT_EQ(tls.host, "10.0.0.1");
  EXPECT_EQ(tls.port, 8443);
}

TEST(ParseHttpUrlTest, Ipv6LiteralHostLosesItsBrackets) {
  ASSERT_OK_AND_ASSIGN(HttpUrl url,
                       ParseHttpUrl("http://[2001:db8::1]:9000/m.bin", "url"));
  EXPECT_EQ(url.host, "2001:db8::1");
  EXPECT_EQ(url.port, 9000);
  ASSERT_OK_AND_ASSIGN(HttpUrl loopback, ParseHttpUrl("https://[::1]/", "url"));
  EXPECT_EQ(loopback.host, "::1");
  EXPECT_EQ(loopback.port, 443);
}

TEST(ParseHttpUrlTest, OtherSchemesAreRefusedNamingTheField) {
  EXPECT_THAT(
      ParseHttpUrl("ftp://example.com/x", "source.url"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("source.url"), HasSubstr("ftp://example.com/x"),
                     HasSubstr("only http and https are supported"))));
  EXPECT_THAT(ParseHttpUrl("file:///etc/passwd", "source.url"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("source.url"),
                             HasSubstr("file:///etc/passwd"))));
  EXPECT_THAT(
      ParseHttpUrl("gopher://example.com/", "source.url"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source.url")));
}

TEST(ParseHttpUrlTest, MissingHostIsRefused) {
  for (const char* url : {"http://", "https://:80/", "http://?x=1"}) {
    EXPECT_THAT(ParseHttpUrl(url, "source.url"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("source.url"),
                               HasSubstr("is not a usable URL"))))
        << url;
  }
}

// "http:///model.bin" has an empty authority (RFC 3986), so no host; it
// must not be read as http://model.bin/, a different server than written.
TEST(ParseHttpUrlTest, EmptyAuthorityIsNotReadAsAHost) {
  EXPECT_THAT(
      ParseHttpUrl("http:///model.bin", "source.url"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source.url")));
}

TEST(ParseHttpUrlTest, SpacesControlCharactersAndJunkAreRefused) {
  EXPECT_THAT(
      ParseHttpUrl("http://example.com/a b.bin", "source.url"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("source.url"),
                     HasSubstr("contains spaces or control characters"))));
  EXPECT_THAT(ParseHttpUrl(" http://example.com/", "source.url"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("contains spaces")));
  EXPECT_THAT(ParseHttpUrl("http://example.com/\n", "source.url"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("control characters")));
  EXPECT_THAT(ParseHttpUrl("", "source.url"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("source.url"), HasSubstr("empty"))));
  EXPECT_THAT(
      ParseHttpUrl("example.com/model.bin", "source.url"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("source.url")));
}

TEST(CheckUrlTest, DefaultPolicyRefusesLoopbackLiteralsAndNames) {
  AddressPolicy policy;
  EXPECT_THAT(CheckUrl("http://127.0.0.1/x", "source.url", policy),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("source.url"), HasSubstr("127.0.0.1"),
                             HasSubstr("loopback"))));
  EXPECT_THAT(CheckUrl("http://[::1]:8080/x", "source.url", policy),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("source.url"), HasSubstr("::1"))));
  // A name is judged by what it resolves to.
  EXPECT_THAT(CheckUrl("http://localhost/x", "source.url", policy),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("source.url"), HasSubstr("loopback"))));
  EXPECT_THAT(
      CheckUrl("http://169.254.169.254/latest/meta-data", "url", policy),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("169.254.169.254")));
}

TEST(CheckUrlTest, AllowListAndAllowAllPrivatePass) {
  AddressPolicy all;
  all.AllowAllPrivate();
  EXPECT_OK(CheckUrl("http://127.0.0.1/x", "url", all));
  EXPECT_OK(CheckUrl("http://localhost/x", "url", all));
  EXPECT_OK(CheckUrl("http://[::1]/x", "url", all));

  AddressPolicy one;
  ASSERT_OK(one.Allow("127.0.0.0/8"));
  EXPECT_OK(CheckUrl("http://127.0.0.1:1234/x", "url", one));
  EXPECT_THAT(CheckUrl("http://10.0.0.1/x", "url", one),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CheckUrlTest, ParseErrorsComeFirstEvenWithAllowAllPrivate) {
  AddressPolicy all;
  all.AllowAllPrivate();
  EXPECT_THAT(CheckUrl("ftp://127.0.0.1/x", "url", all),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only http and https")));
}

TEST(CheckUrlTest, UnresolvableNamePasses) {
  // .invalid never resolves (RFC 2606); the transfer reports it later.
  EXPECT_OK(CheckUrl("http://no-such-host.invalid/x", "url", AddressPolicy()));
}

}  // namespace
}  // namespace mm::http
