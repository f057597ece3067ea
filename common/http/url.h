// URL checks done before a request is queued: only http(s) URLs with a
// host, and (with an address policy) a host that resolves to allowed
// addresses. The transfer checks every connection again (redirects, DNS
// changes); this only makes obvious mistakes fail at once, with
// INVALID_ARGUMENT, instead of inside a queued job.
//
// Thread-safety: pure functions (CheckUrl resolves names, blocking).
#ifndef MM_COMMON_HTTP_URL_H_
#define MM_COMMON_HTTP_URL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/http/address_policy.h"

namespace mm::http {

struct HttpUrl {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6
  int port = 0;        // the explicit or default port
};

// INVALID_ARGUMENT naming `field` for anything but an absolute http(s) URL
// with a host.
absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url,
                                     std::string_view field);

// ParseHttpUrl, then every address the host resolves to must pass
// `policy`: INVALID_ARGUMENT naming the address otherwise. A name that does
// not resolve passes (the transfer reports it, and may succeed later).
absl::Status CheckUrl(std::string_view url, std::string_view field,
                      const AddressPolicy& policy);

}  // namespace mm::http

#endif  // MM_COMMON_HTTP_URL_H_
