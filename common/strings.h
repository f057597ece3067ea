// Small string helpers shared by every folder.
//
// Debian's Abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl::StrCat and friends do not accept a
// std::string_view: AsAbsl converts without copying.
#ifndef MM_COMMON_STRINGS_H_
#define MM_COMMON_STRINGS_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace mm {

inline absl::string_view AsAbsl(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// `text` in single quotes for an error message: C-escaped (so control
// bytes and invalid UTF-8 show as escapes), cut after `max_bytes` without
// splitting a UTF-8 sequence, with "..." when cut.
std::string QuotedForMessage(std::string_view text, size_t max_bytes = 200);

}  // namespace mm

#endif  // MM_COMMON_STRINGS_H_
