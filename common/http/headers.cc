#include "common/http/headers.h"

#include <cctype>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mm::http {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = HexValue(s[i + 1]);
    int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string Latin1ToUtf8(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x80) {
      out.push_back(c);
    } else {
      out.push_back(static_cast<char>(0xc0 | (byte >> 6)));
      out.push_back(static_cast<char>(0x80 | (byte & 0x3f)));
    }
  }
  return out;
}

// Splits a header value into `;`-separated parameters, honouring quoted
// strings (a `;` inside quotes does not split).
std::vector<std::string_view> SplitParameters(std::string_view value) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ';' && !quoted) {
      parts.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(value.substr(start));
  return parts;
}

std::optional<std::string> Unquote(std::string_view v) {
  if (v.empty() || v.front() != '"') return std::string(v);
  if (v.size() < 2 || v.back() != '"') return std::nullopt;
  std::string out;
  for (size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\' && i + 2 < v.size()) ++i;
    out.push_back(v[i]);
  }
  return out;
}

}  // namespace

std::optional<std::string> ContentDispositionFileName(std::string_view value) {
  std::optional<std::string> plain;
  std::optional<std::string> extended;
  std::vector<std::string_view> parts = SplitParameters(value);
  for (size_t i = 1; i < parts.size(); ++i) {
    std::string_view part = Trim(parts[i]);
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = Trim(part.substr(0, eq));
    std::string_view raw = Trim(part.substr(eq + 1));
    if (IEquals(name, "filename*")) {
      // charset'language'percent-encoded
      size_t q1 = raw.find('\'');
      size_t q2 = q1 == std::string_view::npos ? q1 : raw.find('\'', q1 + 1);
      if (q2 == std::string_view::npos) continue;
      std::string_view charset = raw.substr(0, q1);
      std::optional<std::string> decoded = PercentDecode(raw.substr(q2 + 1));
      if (!decoded.has_value()) continue;
      if (IEquals(charset, "utf-8")) {
        extended = *decoded;
      } else if (IEquals(charset, "iso-8859-1")) {
        extended = Latin1ToUtf8(*decoded);
      }
    } else if (IEquals(name, "filename")) {
      plain = Unquote(raw);
    }
  }
  if (extended.has_value() && !extended->empty()) return extended;
  if (plain.has_value() && !plain->empty()) return plain;
  return std::nullopt;
}

std::optional<ContentRange> ParseContentRange(std::string_view value) {
  value = Trim(value);
  if (value.size() < 6 || !IEquals(value.substr(0, 6), "bytes ")) {
    return std::nullopt;
  }
  std::string_view rest = Trim(value.substr(6));
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view range = rest.substr(0, slash);
  std::string_view total = rest.substr(slash + 1);
  ContentRange out;
  if (total != "*") {
    if (!absl::SimpleAtoi(std::string(total), &out.total) || out.total < 0) {
      return std::nullopt;
    }
  }
  if (range == "*") {
    if (out.total < 0) return std::nullopt;
    return out;
  }
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  if (!absl::SimpleAtoi(std::string(range.substr(0, dash)), &out.first) ||
      !absl::SimpleAtoi(std::string(range.substr(dash + 1)), &out.last) ||
      out.first < 0 || out.last < out.first ||
      (out.total >= 0 && out.last >= out.total)) {
    return std::nullopt;
  }
  return out;
}

std::optional<absl::Duration> ParseRetryAfter(std::string_view value,
                                              absl::Time now) {
  std::string text(Trim(value));
  int64_t seconds = 0;
  if (absl::SimpleAtoi(text, &seconds)) {
    if (seconds < 0) return std::nullopt;
    return absl::Seconds(seconds);
  }
  absl::Time when;
  std::string error;
  if (!absl::ParseTime("%a, %d %b %Y %H:%M:%S", text.substr(0, 25), &when,
                       &error)) {
    return std::nullopt;
  }
  return when > now ? when - now : absl::ZeroDuration();
}

std::string ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 410:
      return "Gone";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

std::string HttpErrorType(int status) {
  std::string reason(ReasonPhrase(status));
  if (reason == "Unknown") reason = absl::StrCat("STATUS ", status);
  return absl::StrCat("HTTPError(", absl::AsciiStrToUpper(reason), ")");
}

std::string MediaType(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  return absl::AsciiStrToLower(std::string(Trim(type)));
}

}  // namespace mm::http
