// Small string helpers shared by every folder.
//
// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl::StrCat and friends do not accept a
// std::string_view: AsAbsl (and AsStd, the other way) convert without
// copying.
//
// Text that did not come from this program (bytes of a model file, a remote
// response, an exception's what() quoting either, a user's argument) enters
// an error or log message only through SafeForMessage or QuotedForMessage,
// so every message is valid UTF-8 (gRPC status messages, JSON output and
// terminals need it), shows no control characters and stays short.
//
//   return absl::DataLossError(absl::StrCat(
//       "tensor ", QuotedForMessage(name), ": shape overflows"));
#ifndef MM_COMMON_STRINGS_H_
#define MM_COMMON_STRINGS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace mm {

inline absl::string_view AsAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}
inline std::string_view AsStd(absl::string_view text) {
  return std::string_view(text.data(), text.size());
}

// The default bound on text shown in a message, in bytes.
inline constexpr size_t kMaxMessageTextBytes = 200;

// `text` made fit for a message:
//  - well-formed UTF-8 that prints is kept byte for byte (so are the
//    backslash and quotes);
//  - every byte that is not part of well-formed UTF-8 (stray continuation
//    bytes, truncated sequences, overlong forms, surrogates, code points
//    above U+10FFFF, 0xC0 0xC1 0xF5..0xFF) becomes \xNN, one per byte;
//  - control characters become escapes: \n \r \t, \xNN for the other C0
//    controls and DEL, \uNNNN for the C1 controls (U+0080..U+009F) and for
//    the invisible characters that break or reorder a line (U+2028, U+2029,
//    the bidirectional embeddings, overrides and isolates U+202A..U+202E,
//    U+2066..U+2069);
//  - when the result would exceed `max_bytes`, it is cut at a character
//    (or escape) boundary to leave room for "...", so it is never longer
//    than `max_bytes` (or 3 bytes, "...", when `max_bytes` is below 3).
std::string SafeForMessage(std::string_view text,
                           size_t max_bytes = kMaxMessageTextBytes);

// SafeForMessage(text, max_bytes) in single quotes: 'text'.
std::string QuotedForMessage(std::string_view text,
                             size_t max_bytes = kMaxMessageTextBytes);

// Length of the well-formed UTF-8 sequence at the start of `text` (1 to 4
// bytes), or 0 when `text` is empty or does not start with one (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(std::string_view text);

// Whether `text` is well-formed UTF-8 throughout.
bool IsValidUtf8(std::string_view text);

// The number of hexadecimal digits in a SHA-256 digest.
inline constexpr size_t kSha256HexDigits = 64;

// `text` as a SHA-256 digest in lowercase hex, or nullopt unless it is
// exactly 64 hexadecimal digits (either case; no prefix, no whitespace).
// Every place that takes a digest from a user or a remote listing checks it
// here, so one spelling is stored and compared.
std::optional<std::string> NormalizeSha256Hex(std::string_view text);

}  // namespace mm

#endif  // MM_COMMON_STRINGS_H_
