#include "common/http/url.h"

#include <curl/curl.h>
#include <netdb.h>

#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace mm::http {
namespace {

struct UrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};

std::string Part(CURLU* url, CURLUPart part, unsigned flags = 0) {
  char* text = nullptr;
  if (curl_url_get(url, part, &text, flags) != CURLUE_OK || text == nullptr) {
    return "";
  }
  std::string out(text);
  curl_free(text);
  return out;
}

}  // namespace

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url,
                                     std::string_view field) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " ", QuotedForMessage(url),
                     " is not a usable URL: ", AsAbsl(why)));
  };
  if (url.empty()) return bad("empty");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("contains spaces or control characters");
    }
  }
  std::unique_ptr<CURLU, UrlDeleter> handle(curl_url());
  std::string text(url);
  if (curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return bad("malformed");
  }
  HttpUrl out;
  out.scheme = Part(handle.get(), CURLUPART_SCHEME);
  if (out.scheme != "http" && out.scheme != "https") {
    return bad("only http and https are supported");
  }
  // libcurl reads "http:///x" as host "x"; an empty authority is no host.
  size_t scheme_end = url.find("://");
  if (scheme_end != std::string_view::npos &&
      (scheme_end + 3 >= url.size() || url[scheme_end + 3] == '/')) {
    return bad("no host");
  }
  out.host = Part(handle.get(), CURLUPART_HOST);
  if (out.host.empty()) return bad("no host");
  if (out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  std::string port = Part(handle.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!absl::SimpleAtoi(port, &out.port)) out.port = 0;
  return out;
}

absl::Status CheckUrl(std::string_view url, std::string_view field,
                      const AddressPolicy& policy) {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url, field);
  if (!parsed.ok()) return parsed.status();
  if (policy.allows_all_private()) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  if (getaddrinfo(parsed->host.c_str(), nullptr, &hints, &results) != 0) {
    return absl::OkStatus();
  }
  absl::Status status;
  for (addrinfo* ai = results; ai != nullptr && status.ok(); ai = ai->ai_next) {
    absl::Status allowed = policy.Check(ai->ai_addr);
    if (!allowed.ok()) {
      status = absl::InvalidArgumentError(absl::StrCat(
          AsAbsl(field), " ", QuotedForMessage(url), ": ", allowed.message()));
    }
  }
  freeaddrinfo(results);
  return status;
}

}  // namespace mm::http
