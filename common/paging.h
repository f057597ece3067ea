// The one paging policy of every List rpc (records, downloads, installs):
//
// - page_size 0 means kDefaultPageSize; a page_size above kMaxPageSize is
//   lowered to kMaxPageSize (AIP-158: a client asking for more than the
//   service gives still gets a useful page); a negative one is
//   INVALID_ARGUMENT.
// - next_page_token is opaque (web-safe base64 of JSON) and bound to the
//   query: it carries a fingerprint of the filters and order it was issued
//   for, and a token replayed with other filters is INVALID_ARGUMENT
//   instead of silently skipping or repeating rows.
//
//   ASSIGN_OR_RETURN(int size, EffectivePageSize(request.page_size()));
//   ASSIGN_OR_RETURN(json after, DecodePageToken(token, fingerprint));
//   ... read size + 1 rows after `after` ...
//   next = EncodePageToken(fingerprint, last_row_position);
//
// Thread-safety: plain functions.
#ifndef MM_COMMON_PAGING_H_
#define MM_COMMON_PAGING_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace mm {

// Most items one List page returns.
inline constexpr int kMaxPageSize = 1000;
// Items per page when the request leaves page_size at 0.
inline constexpr int kDefaultPageSize = 100;

// The page size to serve for a request's page_size (see the policy above).
absl::StatusOr<int> EffectivePageSize(int requested);

// A token for the page after the row at `position` (any JSON value the
// service can resume from, e.g. a sequence number or sort values), for the
// query whose filters and order `fingerprint` names.
std::string EncodePageToken(std::string_view fingerprint,
                            const nlohmann::json& position);
// The position in `token`, or null for an empty token. INVALID_ARGUMENT
// when the token is malformed or was issued for another fingerprint.
absl::StatusOr<nlohmann::json> DecodePageToken(std::string_view token,
                                               std::string_view fingerprint);

}  // namespace mm

#endif  // MM_COMMON_PAGING_H_
