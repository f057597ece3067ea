#include "common/http/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace mm::http {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0,    0,
                                                     0, 0, 0, 0, 0xff, 0xff};

IpAddress FromV4(const uint8_t* four) {
  IpAddress address;
  std::memcpy(address.bytes.data(), kV4MappedPrefix.data(), 12);
  std::memcpy(address.bytes.data() + 12, four, 4);
  return address;
}

bool PrefixMatches(const IpAddress& address, const IpAddress& base, int bits) {
  int full = bits / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), full) != 0) {
    return false;
  }
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (address.bytes[full] & mask) == (base.bytes[full] & mask);
}

struct NamedRange {
  IpRange range;
  const char* reason;
};

const std::vector<NamedRange>& NonPublicRanges() {
  static const std::vector<NamedRange>* ranges = [] {
    auto* out = new std::vector<NamedRange>;
    const std::pair<const char*, const char*> table[] = {
        // IPv4 (stored IPv4-mapped).
        {"0.0.0.0/8", "unspecified"},
        {"10.0.0.0/8", "private"},
        {"100.64.0.0/10", "shared (carrier-grade NAT)"},
        {"127.0.0.0/8", "loopback"},
        {"169.254.0.0/16", "link-local"},
        {"172.16.0.0/12", "private"},
        {"192.0.0.0/24", "reserved (IETF protocol assignments)"},
        {"192.0.2.0/24", "reserved (documentation)"},
        {"192.88.99.0/24", "reserved (6to4 relay)"},
        {"192.168.0.0/16", "private"},
        {"198.18.0.0/15", "reserved (benchmarking)"},
        {"198.51.100.0/24", "reserved (documentation)"},
        {"203.0.113.0/24", "reserved (documentation)"},
        {"224.0.0.0/4", "multicast"},
        {"240.0.0.0/4", "reserved"},
        // IPv6.
        {"::/128", "unspecified"},
        {"::1/128", "loopback"},
        {"100::/64", "reserved (discard)"},
        {"2001::/23", "reserved (IETF protocol assignments)"},
        {"2001:db8::/32", "reserved (documentation)"},
        {"fc00::/7", "private (unique local)"},
        {"fe80::/10", "link-local"},
        {"fec0::/10", "reserved (site-local)"},
        {"ff00::/8", "multicast"},
    };
    for (const auto& [cidr, reason] : table) {
      out->push_back({*ParseIpRange(cidr), reason});
    }
    return out;
  }();
  return *ranges;
}

}  // namespace

bool IpAddress::IsV4() const {
  return std::memcmp(bytes.data(), kV4MappedPrefix.data(), 12) == 0;
}

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (IsV4()) {
    inet_ntop(AF_INET, bytes.data() + 12, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, bytes.data(), text, sizeof(text));
  }
  return text;
}

absl::StatusOr<IpAddress> ParseIpAddress(std::string_view text) {
  std::string s(text);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
    s = s.substr(1, s.size() - 2);
  }
  uint8_t buffer[16];
  if (inet_pton(AF_INET, s.c_str(), buffer) == 1) return FromV4(buffer);
  if (inet_pton(AF_INET6, s.c_str(), buffer) == 1) {
    IpAddress address;
    std::memcpy(address.bytes.data(), buffer, 16);
    return address;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("not an IP address: ", QuotedForMessage(text)));
}

absl::StatusOr<IpAddress> FromSockaddr(const sockaddr* address) {
  if (address == nullptr) return absl::InvalidArgumentError("no address");
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return FromV4(reinterpret_cast<const uint8_t*>(&v4->sin_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    IpAddress out;
    std::memcpy(out.bytes.data(), &v6->sin6_addr, 16);
    return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported address family ", address->sa_family));
}

bool IpRange::Contains(const IpAddress& address) const {
  return PrefixMatches(address, base, prefix_bits);
}

absl::StatusOr<IpRange> ParseIpRange(std::string_view text) {
  size_t slash = text.find('/');
  IpRange range;
  absl::StatusOr<IpAddress> base = ParseIpAddress(text.substr(0, slash));
  if (!base.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a CIDR range: ", QuotedForMessage(text)));
  }
  range.base = *base;
  int max_bits = base->IsV4() ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    std::string digits(text.substr(slash + 1));
    if (!absl::SimpleAtoi(digits, &bits) || bits < 0 || bits > max_bits) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad prefix length in ", QuotedForMessage(text)));
    }
  }
  range.prefix_bits = base->IsV4() ? 96 + bits : bits;
  return range;
}

std::string NonPublicReason(const IpAddress& address) {
  // IPv6 forms that carry an IPv4 address are judged by that address.
  static const IpRange kEmbedding[] = {
      *ParseIpRange("64:ff9b::/96"),  // NAT64
      *ParseIpRange("::/96"),         // IPv4-compatible (deprecated)
  };
  for (const IpRange& range : kEmbedding) {
    if (!address.IsV4() && range.Contains(address) &&
        !(address.bytes[12] == 0 && address.bytes[13] == 0 &&
          address.bytes[14] == 0 && address.bytes[15] <= 1)) {
      return NonPublicReason(FromV4(address.bytes.data() + 12));
    }
  }
  static const IpRange k6to4 = *ParseIpRange("2002::/16");
  if (k6to4.Contains(address)) {
    std::string inner = NonPublicReason(FromV4(address.bytes.data() + 2));
    if (!inner.empty()) return inner;
  }
  for (const NamedRange& named : NonPublicRanges()) {
    if (named.range.Contains(address)) return named.reason;
  }
  return "";
}

absl::Status AddressPolicy::Allow(std::string_view cidr) {
  absl::StatusOr<IpRange> range = ParseIpRange(cidr);
  if (!range.ok()) return range.status();
  allowed_.push_back(*range);
  return absl::OkStatus();
}

absl::Status AddressPolicy::Check(const IpAddress& address) const {
  if (allow_all_) return absl::OkStatus();
  std::string reason = NonPublicReason(address);
  if (reason.empty()) return absl::OkStatus();
  for (const IpRange& range : allowed_) {
    if (range.Contains(address)) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "refusing to connect to ", address.ToString(), " (", reason,
      " address); allow it with --allow-private-urls or --allow-cidr"));
}

absl::Status AddressPolicy::Check(const sockaddr* address) const {
  absl::StatusOr<IpAddress> ip = FromSockaddr(address);
  if (!ip.ok()) return absl::PermissionDeniedError(ip.status().message());
  return Check(*ip);
}

}  // namespace mm::http
