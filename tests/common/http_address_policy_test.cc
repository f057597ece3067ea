// Tests for the SSRF guard: address and range parsing, the classification
// of every non-public range, and the allow-list.
#include "common/http/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace mm::http {
namespace {

using ::mm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

IpAddress MustParse(const std::string& text) {
  absl::StatusOr<IpAddress> address = ParseIpAddress(text);
  EXPECT_OK(address.status()) << text;
  return address.ok() ? *address : IpAddress{};
}

TEST(ParseIpAddressTest, StoresIpv4AsMapped) {
  ASSERT_OK_AND_ASSIGN(IpAddress address, ParseIpAddress("192.0.2.1"));
  EXPECT_TRUE(address.IsV4());
  const std::array<uint8_t, 16> expected = {0, 0, 0,    0,    0,   0, 0, 0,
                                            0, 0, 0xff, 0xff, 192, 0, 2, 1};
  EXPECT_EQ(address.bytes, expected);
  EXPECT_EQ(address.ToString(), "192.0.2.1");
}

TEST(ParseIpAddressTest, MappedTextIsTheSameAddressAsPlainIpv4) {
  ASSERT_OK_AND_ASSIGN(IpAddress mapped, ParseIpAddress("::ffff:10.1.2.3"));
  ASSERT_OK_AND_ASSIGN(IpAddress plain, ParseIpAddress("10.1.2.3"));
  EXPECT_TRUE(mapped.IsV4());
  EXPECT_EQ(mapped.bytes, plain.bytes);
}

TEST(ParseIpAddressTest, ParsesIpv6WithAndWithoutBrackets) {
  ASSERT_OK_AND_ASSIGN(IpAddress plain, ParseIpAddress("2001:db8::1"));
  ASSERT_OK_AND_ASSIGN(IpAddress bracketed, ParseIpAddress("[2001:db8::1]"));
  EXPECT_FALSE(plain.IsV4());
  EXPECT_EQ(plain.bytes, bracketed.bytes);
  EXPECT_EQ(plain.bytes[0], 0x20);
  EXPECT_EQ(plain.bytes[1], 0x01);
  EXPECT_EQ(plain.bytes[15], 0x01);
  EXPECT_EQ(plain.ToString(), "2001:db8::1");
}

TEST(ParseIpAddressTest, RejectsNonAddresses) {
  for (const char* text :
       {"", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "::g",
        "[::1", "::1]", "1.2.3.4/8", "example.com"}) {
    EXPECT_THAT(ParseIpAddress(text),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not an IP address")))
        << "'" << text << "'";
  }
}

TEST(FromSockaddrTest, ReadsBothFamiliesAndRejectsOthers) {
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "10.9.8.7", &v4.sin_addr), 1);
  ASSERT_OK_AND_ASSIGN(IpAddress a,
                       FromSockaddr(reinterpret_cast<const sockaddr*>(&v4)));
  EXPECT_EQ(a.ToString(), "10.9.8.7");

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "fe80::1", &v6.sin6_addr), 1);
  ASSERT_OK_AND_ASSIGN(IpAddress b,
                       FromSockaddr(reinterpret_cast<const sockaddr*>(&v6)));
  EXPECT_EQ(b.ToString(), "fe80::1");

  sockaddr other{};
  other.sa_family = AF_UNIX;
  EXPECT_THAT(FromSockaddr(&other),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unsupported address family")));
  EXPECT_THAT(FromSockaddr(nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseIpRangeTest, Ipv4PrefixIsCountedOverTheMappedForm) {
  ASSERT_OK_AND_ASSIGN(IpRange range, ParseIpRange("10.0.0.0/8"));
  EXPECT_EQ(range.prefix_bits, 96 + 8);
  EXPECT_TRUE(range.Contains(MustParse("10.255.1.2")));
  EXPECT_FALSE(range.Contains(MustParse("11.0.0.0")));
  // An IPv6 address sharing the low bytes is not in an IPv4 range.
  EXPECT_FALSE(range.Contains(MustParse("::a00:1")));
}

TEST(ParseIpRangeTest, OddPrefixLengthsMaskInsideAByte) {
  ASSERT_OK_AND_ASSIGN(IpRange range, ParseIpRange("172.16.0.0/12"));
  EXPECT_TRUE(range.Contains(MustParse("172.16.0.1")));
  EXPECT_TRUE(range.Contains(MustParse("172.31.255.255")));
  EXPECT_FALSE(range.Contains(MustParse("172.32.0.0")));
  EXPECT_FALSE(range.Contains(MustParse("172.15.255.255")));
}

TEST(ParseIpRangeTest, SingleAddressesAndIpv6Ranges) {
  ASSERT_OK_AND_ASSIGN(IpRange one, ParseIpRange("127.0.0.1"));
  EXPECT_EQ(one.prefix_bits, 128);
  EXPECT_TRUE(one.Contains(MustParse("127.0.0.1")));
  EXPECT_FALSE(one.Contains(MustParse("127.0.0.2")));

  ASSERT_OK_AND_ASSIGN(IpRange v6, ParseIpRange("fd00::/8"));
  EXPECT_EQ(v6.prefix_bits, 8);
  EXPECT_TRUE(v6.Contains(MustParse("fd12:3456::1")));
  EXPECT_FALSE(v6.Contains(MustParse("fe00::1")));

  ASSERT_OK_AND_ASSIGN(IpRange everything, ParseIpRange("::/0"));
  EXPECT_TRUE(everything.Contains(MustParse("8.8.8.8")));
  EXPECT_TRUE(everything.Contains(MustParse("2606:4700::1111")));
}

TEST(ParseIpRangeTest, RejectsBadRanges) {
  EXPECT_THAT(ParseIpRange("10.0.0.0/33"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad prefix length in '10.0.0.0/33'")));
  EXPECT_THAT(ParseIpRange("::/129"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad prefix length")));
  for (const char* text : {"10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8x"}) {
    EXPECT_THAT(ParseIpRange(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("bad prefix length")))
        << text;
  }
  for (const char* text : {"", "/8", "ten/8", "10.0.0/8"}) {
    EXPECT_THAT(ParseIpRange(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("not a CIDR range")))
        << text;
  }
}

struct Classified {
  const char* address;
  const char* reason;
};

class NonPublicReasonTest : public ::testing::TestWithParam<Classified> {};

TEST_P(NonPublicReasonTest, NamesTheRange) {
  EXPECT_EQ(NonPublicReason(MustParse(GetParam().address)), GetParam().reason)
      << GetParam().address;
}

INSTANTIATE_TEST_SUITE_P(
    EveryRange, NonPublicReasonTest,
    ::testing::Values(
        // IPv4.
        Classified{"0.0.0.0", "unspecified"},
        Classified{"0.1.2.3", "unspecified"}, Classified{"10.0.0.1", "private"},
        Classified{"10.255.255.255", "private"},
        Classified{"100.64.0.1", "shared (carrier-grade NAT)"},
        Classified{"100.127.255.254", "shared (carrier-grade NAT)"},
        Classified{"127.0.0.1", "loopback"},
        Classified{"127.8.9.10", "loopback"},
        Classified{"169.254.169.254", "link-local"},
        Classified{"172.16.0.1", "private"},
        Classified{"172.31.255.255", "private"},
        Classified{"192.0.0.8", "reserved (IETF protocol assignments)"},
        Classified{"192.0.2.1", "reserved (documentation)"},
        Classified{"192.88.99.1", "reserved (6to4 relay)"},
        Classified{"192.168.1.1", "private"},
        Classified{"198.18.0.1", "reserved (benchmarking)"},
        Classified{"198.19.255.255", "reserved (benchmarking)"},
        Classified{"198.51.100.7", "reserved (documentation)"},
        Classified{"203.0.113.9", "reserved (documentation)"},
        Classified{"224.0.0.1", "multicast"},
        Classified{"239.255.255.250", "multicast"},
        Classified{"240.0.0.1", "reserved"},
        Classified{"255.255.255.255", "reserved"},
        // IPv6.
        Classified{"::", "unspecified"}, Classified{"::1", "loopback"},
        Classified{"100::1", "reserved (discard)"},
        Classified{"2001::1", "reserved (IETF protocol assignments)"},
        Classified{"2001:db8::1", "reserved (documentation)"},
        Classified{"fc00::1", "private (unique local)"},
        Classified{"fd12:3456::1", "private (unique local)"},
        Classified{"fe80::1", "link-local"},
        Classified{"fec0::1", "reserved (site-local)"},
        Classified{"ff02::1", "multicast"},
        // IPv4 inside IPv6 is judged by the IPv4 address.
        Classified{"::ffff:127.0.0.1", "loopback"},
        Classified{"::ffff:10.1.2.3", "private"},
        Classified{"64:ff9b::a00:1", "private"},
        Classified{"64:ff9b::7f00:1", "loopback"},
        Classified{"::a9fe:a9fe", "link-local"},  // IPv4-compatible
        Classified{"2002:a00:1::1", "private"},
        Classified{"2002:7f00:1::", "loopback"}));

TEST(NonPublicReasonTest, PublicAddressesHaveNoReason) {
  for (const char* text :
       {"8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:808:808::1", "172.32.0.1", "100.128.0.1",
        "11.0.0.1", "2a00:1450::1"}) {
    EXPECT_EQ(NonPublicReason(MustParse(text)), "") << text;
  }
}

TEST(AddressPolicyTest, DefaultRefusesNonPublicNamingTheAddress) {
  AddressPolicy policy;
  EXPECT_FALSE(policy.allows_all_private());
  EXPECT_THAT(policy.Check(MustParse("127.0.0.1")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("127.0.0.1"), HasSubstr("loopback"))));
  EXPECT_THAT(
      policy.Check(MustParse("169.254.169.254")),
      StatusIs(absl::StatusCode::kPermissionDenied,
               AllOf(HasSubstr("169.254.169.254"), HasSubstr("link-local"))));
  EXPECT_THAT(
      policy.Check(MustParse("::ffff:10.1.2.3")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("10.1.2.3")));
  EXPECT_THAT(
      policy.Check(MustParse("fe80::1")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("fe80::1")));
  EXPECT_OK(policy.Check(MustParse("8.8.8.8")));
  EXPECT_OK(policy.Check(MustParse("2606:4700::1111")));
}

TEST(AddressPolicyTest, ChecksSockaddrs) {
  AddressPolicy policy;
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "192.168.0.1", &v4.sin_addr), 1);
  EXPECT_THAT(
      policy.Check(reinterpret_cast<const sockaddr*>(&v4)),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("192.168.0.1")));
  ASSERT_EQ(inet_pton(AF_INET, "1.1.1.1", &v4.sin_addr), 1);
  EXPECT_OK(policy.Check(reinterpret_cast<const sockaddr*>(&v4)));

  // An address family the policy cannot judge is refused, not let through.
  sockaddr other{};
  other.sa_family = AF_UNIX;
  EXPECT_THAT(policy.Check(&other),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AddressPolicyTest, AllowListAddsOnlyItsRange) {
  AddressPolicy policy;
  ASSERT_OK(policy.Allow("127.0.0.1/32"));
  EXPECT_OK(policy.Check(MustParse("127.0.0.1")));
  EXPECT_OK(policy.Check(MustParse("::ffff:127.0.0.1")));
  EXPECT_THAT(
      policy.Check(MustParse("127.0.0.2")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("127.0.0.2")));
  EXPECT_THAT(policy.Check(MustParse("10.0.0.1")),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(policy.Check(MustParse("::1")),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_FALSE(policy.allows_all_private());
}

TEST(AddressPolicyTest, AllowRejectsBadText) {
  AddressPolicy policy;
  EXPECT_THAT(
      policy.Allow("10.0.0.0/40"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("10.0.0.0/40")));
  EXPECT_THAT(
      policy.Allow("intranet"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("intranet")));
  // Nothing was added by the failed calls.
  EXPECT_THAT(policy.Check(MustParse("10.0.0.1")),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AddressPolicyTest, AllowAllPrivatePassesEverything) {
  AddressPolicy policy;
  policy.AllowAllPrivate();
  EXPECT_TRUE(policy.allows_all_private());
  for (const char* text : {"127.0.0.1", "10.0.0.1", "169.254.169.254", "::1",
                           "fe80::1", "0.0.0.0", "8.8.8.8"}) {
    EXPECT_OK(policy.Check(MustParse(text))) << text;
  }
}

}  // namespace
}  // namespace mm::http
