// Which network addresses an outgoing request may connect to: the guard
// against server-side request forgery (a client asking the service to fetch
// http://169.254.169.254/ or a database on the pod network).
//
// By default only public addresses pass: loopback, private, link-local,
// shared (CGNAT), documentation, benchmarking, reserved, multicast and
// unspecified ranges are refused, in IPv4 and IPv6, including IPv4 addresses
// embedded in IPv6 (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible, NAT64
// 64:ff9b::/96, 6to4 2002::/16). Trusted mirrors and tests add CIDR ranges
// to an allow-list, or allow every private address.
//
// The check runs on the address a socket is about to connect to (every
// redirect hop, after DNS), so a name that resolves to a private address
// (DNS rebinding included) is refused as well as a literal one.
//
//   AddressPolicy policy;
//   RETURN_IF_ERROR(policy.Allow("10.0.0.0/8"));
//   absl::Status s = policy.Check(address);  // PERMISSION_DENIED if refused
//
// Thread-safety: const methods may be called concurrently.
#ifndef MM_COMMON_HTTP_ADDRESS_POLICY_H_
#define MM_COMMON_HTTP_ADDRESS_POLICY_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mm::http {

// An IPv4 or IPv6 address as 16 bytes; IPv4 is stored IPv4-mapped
// (::ffff:a.b.c.d).
struct IpAddress {
  std::array<uint8_t, 16> bytes{};

  bool IsV4() const;  // IPv4-mapped
  std::string ToString() const;
};

// Parses "192.0.2.1", "::1" or "[::1]". INVALID_ARGUMENT otherwise.
absl::StatusOr<IpAddress> ParseIpAddress(std::string_view text);
// The address of a sockaddr_in / sockaddr_in6; INVALID_ARGUMENT for other
// families.
absl::StatusOr<IpAddress> FromSockaddr(const sockaddr* address);

// A CIDR range: "10.0.0.0/8", "fd00::/8", or one address ("127.0.0.1").
struct IpRange {
  IpAddress base;
  int prefix_bits = 128;  // over the 16-byte form; IPv4 /n is 96 + n

  bool Contains(const IpAddress& address) const;
};
absl::StatusOr<IpRange> ParseIpRange(std::string_view text);

// Why `address` is not public (e.g. "loopback", "private", "link-local"),
// or "" when it is a public unicast address.
std::string NonPublicReason(const IpAddress& address);

class AddressPolicy {
 public:
  // Only public addresses.
  AddressPolicy() = default;

  // Every address passes (`--allow-private-urls`).
  void AllowAllPrivate() { allow_all_ = true; }
  bool allows_all_private() const { return allow_all_; }
  // Adds one CIDR range to the allow-list. INVALID_ARGUMENT for bad text.
  absl::Status Allow(std::string_view cidr);

  // OK, or PERMISSION_DENIED naming the address and why it is refused.
  absl::Status Check(const IpAddress& address) const;
  absl::Status Check(const sockaddr* address) const;

 private:
  bool allow_all_ = false;
  std::vector<IpRange> allowed_;
};

}  // namespace mm::http

#endif  // MM_COMMON_HTTP_ADDRESS_POLICY_H_
