// One small HTTP request answered in memory (an API call such as the
// hub's model-info), on a TransferLoop, blocking the caller until it ends.
// Large bodies are the downloader's business: the body is capped.
//
//   ASSIGN_OR_RETURN(FetchResult result,
//                    Fetch(*loop, {.url = url, .bearer_token = token},
//                          kMaxModelInfoBytes));
//   if (result.head.status != 200) ...
//
// Thread-safety: Fetch may be called from any thread except the loop's own
// (a handler callback): it waits for the loop.
#ifndef MM_COMMON_HTTP_FETCH_H_
#define MM_COMMON_HTTP_FETCH_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "common/http/transfer_loop.h"

namespace mm::http {

struct FetchResult {
  // The final response (after redirects), whatever its status.
  ResponseHead head;
  std::string body;
};

// Sends `request` and collects the final response. A response of any HTTP
// status is OK (the caller interprets it). Errors: UNAVAILABLE when no
// response arrived (connection refused or reset, DNS, a stall, a truncated
// body), PERMISSION_DENIED when the address policy refused the host,
// RESOURCE_EXHAUSTED when the body exceeds `max_body_bytes`,
// INVALID_ARGUMENT for a URL libcurl refuses; each names the URL.
absl::StatusOr<FetchResult> Fetch(TransferLoop& loop, Request request,
                                  size_t max_body_bytes);

}  // namespace mm::http

#endif  // MM_COMMON_HTTP_FETCH_H_
