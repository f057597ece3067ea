#include "common/paging.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mm {
namespace {

constexpr char kMalformed[] =
    "page_token is malformed; pass the next_page_token of the previous "
    "response unchanged";

}  // namespace

absl::StatusOr<int> EffectivePageSize(int requested) {
  if (requested < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_size must not be negative (0 means ", kDefaultPageSize, ")"));
  }
  if (requested == 0) return kDefaultPageSize;
  return requested > kMaxPageSize ? kMaxPageSize : requested;
}

std::string EncodePageToken(std::string_view fingerprint,
                            const nlohmann::json& position) {
  nlohmann::json token = {{"q", std::string(fingerprint)}, {"after", position}};
  return absl::WebSafeBase64Escape(token.dump());
}

absl::StatusOr<nlohmann::json> DecodePageToken(std::string_view token,
                                               std::string_view fingerprint) {
  if (token.empty()) return nlohmann::json(nullptr);
  std::string text;
  if (!absl::WebSafeBase64Unescape(std::string(token), &text)) {
    return absl::InvalidArgumentError(kMalformed);
  }
  nlohmann::json parsed =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("q") ||
      !parsed["q"].is_string() || !parsed.contains("after") ||
      parsed["after"].is_null()) {
    return absl::InvalidArgumentError(kMalformed);
  }
  if (parsed["q"].get<std::string>() != fingerprint) {
    return absl::InvalidArgumentError(
        "page_token was issued for other filters or another order; repeat "
        "the same filters and order when paging");
  }
  return parsed["after"];
}

}  // namespace mm
