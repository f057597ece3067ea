// Parsing of the HTTP response headers a downloader acts on. Each parser
// takes the raw header value and never trusts it: malformed input gives
// std::nullopt, not a guess.
//
// Thread-safety: pure functions.
#ifndef MM_COMMON_HTTP_HEADERS_H_
#define MM_COMMON_HTTP_HEADERS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace mm::http {

// The file name a Content-Disposition value suggests: the RFC 5987
// `filename*=UTF-8''percent%20encoded` form when present (UTF-8 or
// ISO-8859-1), else `filename="quoted"` or `filename=token`. The name is
// returned as sent (decoded); whether it is safe to use is the caller's
// question. std::nullopt when there is none or it is malformed.
std::optional<std::string> ContentDispositionFileName(std::string_view value);

// A Content-Range value: "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/*" or
// "bytes */TOTAL" (the form of a 416). Unknown parts are -1.
struct ContentRange {
  int64_t first = -1;
  int64_t last = -1;   // inclusive
  int64_t total = -1;  // -1 when "*"
};
std::optional<ContentRange> ParseContentRange(std::string_view value);

// Retry-After: delay seconds ("120") or an HTTP date, relative to `now`
// (never negative). std::nullopt when unparsable.
std::optional<absl::Duration> ParseRetryAfter(std::string_view value,
                                              absl::Time now);

// The standard reason phrase of a status code ("Not Found"); "Unknown" for
// codes without one.
std::string ReasonPhrase(int status);

// The short error type of a failed response in the reference's style:
// 404 -> "HTTPError(NOT FOUND)".
std::string HttpErrorType(int status);

// The media type of a Content-Type value, lowercased, without parameters:
// "Text/HTML; charset=utf-8" -> "text/html".
std::string MediaType(std::string_view content_type);

}  // namespace mm::http

#endif  // MM_COMMON_HTTP_HEADERS_H_
