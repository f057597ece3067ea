// Fuzzes the parsers of untrusted response headers and addresses
// (common/http): they must never crash, and what they accept must be
// consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "absl/time/time.h"
#include "common/http/address_policy.h"
#include "common/http/headers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  (void)mm::http::ContentDispositionFileName(text);
  (void)mm::http::MediaType(text);
  (void)mm::http::ParseRetryAfter(text, absl::UnixEpoch());

  if (std::optional<mm::http::ContentRange> range =
          mm::http::ParseContentRange(text)) {
    bool unsatisfied = range->first < 0;
    if (unsatisfied) {
      if (range->total < 0 || range->last >= 0) std::abort();
    } else if (range->last < range->first ||
               (range->total >= 0 && range->last >= range->total)) {
      std::abort();
    }
  }

  if (absl::StatusOr<mm::http::IpAddress> ip = mm::http::ParseIpAddress(text);
      ip.ok()) {
    // What parses prints back to something that parses to the same bytes.
    absl::StatusOr<mm::http::IpAddress> again =
        mm::http::ParseIpAddress(ip->ToString());
    if (!again.ok() || again->bytes != ip->bytes) std::abort();
    (void)mm::http::NonPublicReason(*ip);
  }
  if (absl::StatusOr<mm::http::IpRange> range = mm::http::ParseIpRange(text);
      range.ok()) {
    if (range->prefix_bits < 0 || range->prefix_bits > 128) std::abort();
    if (!range->Contains(range->base)) std::abort();
  }
  return 0;
}
