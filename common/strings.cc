#include "common/strings.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mm {

std::string QuotedForMessage(std::string_view text, size_t max_bytes) {
  size_t cut = std::min(text.size(), max_bytes);
  while (cut < text.size() && cut > 0 &&
         (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  std::string shown = absl::Utf8SafeCHexEscape(AsAbsl(text.substr(0, cut)));
  if (cut < text.size()) shown += "...";
  return absl::StrCat("'", shown, "'");
}

}  // namespace mm
