#include "model/source.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace mm::model {
namespace {

constexpr std::array<std::string_view, 8> kWeightSuffixes = {
    ".safetensors", ".bin", ".onnx", ".xml",
    ".pth",         ".pt",  ".ckpt", ".msgpack"};

constexpr std::array<std::string_view, 6> kRepoVariants = {
    "", "fp16", "fp32", "onnx", "openvino", "flax"};

// Hosts whose URLs are Hugging Face pages rather than plain downloads.
constexpr std::array<std::string_view, 3> kHfHosts = {
    "huggingface.co", "www.huggingface.co", "hf.co"};

// First path components of huggingface.co that are site pages, not users:
// "https://huggingface.co/docs/hub" is not the repo "docs/hub".
constexpr std::array<std::string_view, 16> kHfReservedOwners = {
    "api",     "blog",     "collections", "datasets", "docs",          "join",
    "learn",   "login",    "models",      "new",      "organizations", "papers",
    "pricing", "settings", "spaces",      "tasks"};

constexpr char kGrammarHint[] =
    "expected an existing local path, a Hugging Face repo id "
    "(owner/name[:variant[:subfolder]], variant one of fp16, fp32, onnx, "
    "openvino, flax) or an http(s) URL";

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.substr(text.size() - suffix.size()) == suffix;
}

char AsciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string AsciiLowered(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         AsciiLowered(text.substr(0, prefix.size())) == prefix;
}

// Byte index of the first byte that does not belong to well-formed UTF-8
// (no overlongs, no surrogates, nothing above U+10FFFF), or npos.
std::size_t FirstInvalidUtf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t length = Utf8SequenceLength(text.substr(i));
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

absl::Status CheckSourceText(std::string_view text) {
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model source is empty; ", kGrammarHint));
  }
  if (text.size() > kMaxModelSourceBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model source ", QuotedForMessage(text), " is ", text.size(),
        " bytes long, more than the limit of ", kMaxModelSourceBytes,
        " bytes; give a shorter path, repo id or URL"));
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model source ", QuotedForMessage(text),
          " contains the control character 0x", absl::Hex(c, absl::kZeroPad2),
          " at byte ", i, "; remove it (a stray newline, tab or NUL?)"));
    }
  }
  if (std::size_t bad = FirstInvalidUtf8(text); bad != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("model source ", QuotedForMessage(text),
                     " is not valid UTF-8 (bad byte at offset ", bad,
                     "); re-type it or rename the file"));
  }
  return absl::OkStatus();
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

// Whether `head` is `owner/name` as the spec's regex `[^/:]+/[^/:]+` has it.
bool LooksLikeRepoId(std::string_view head) {
  std::size_t slash = head.find('/');
  if (slash == std::string_view::npos || slash == 0 ||
      slash + 1 == head.size()) {
    return false;
  }
  std::string_view name = head.substr(slash + 1);
  return head.find(':') == std::string_view::npos &&
         name.find('/') == std::string_view::npos;
}

// The regex admits "./x" and "../x"; those are never repos and would make
// unsafe local paths and URLs, so they are refused with a clear reason.
absl::Status CheckRepoIdParts(std::string_view text, std::string_view repo_id) {
  std::size_t slash = repo_id.find('/');
  for (std::string_view part :
       {repo_id.substr(0, slash), repo_id.substr(slash + 1)}) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "model source ", QuotedForMessage(text),
          " is not an existing local path, and as a Hugging Face repo id its "
          "owner or name ",
          QuotedForMessage(part),
          " is not valid; check the path, or give the repo as owner/name"));
    }
  }
  return absl::OkStatus();
}

// Validates one '+'-separated subfolder and drops trailing '/'.
absl::StatusOr<std::string> CleanSubfolder(std::string_view text,
                                           std::string_view subfolder) {
  std::string_view trimmed = subfolder;
  while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.remove_suffix(1);
  auto fail = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model source ", QuotedForMessage(text), ": subfolder ",
        QuotedForMessage(subfolder), " ", AsAbsl(why),
        "; write subfolders as relative paths inside the repo, e.g. "
        "owner/name::vae or owner/name::text_encoder+tokenizer"));
  };
  if (trimmed.empty()) return fail("is empty");
  if (trimmed.find('\\') != std::string_view::npos) {
    return fail("contains a backslash");
  }
  for (std::string_view segment : Split(trimmed, '/')) {
    if (segment.empty()) return fail("has an empty path component");
    if (segment == "." || segment == "..") {
      return fail("has a '.' or '..' component");
    }
  }
  return std::string(trimmed);
}

// nullopt: `text` does not match the repo-id grammar at all (the caller goes
// on to the next kind of source). An error: it matches, but is unusable.
std::optional<absl::StatusOr<HfRepoSource>> TryParseRepoId(
    std::string_view text) {
  std::size_t colon = text.find(':');
  std::string_view head = text.substr(0, colon);
  if (!LooksLikeRepoId(head)) return std::nullopt;
  HfRepoSource source;
  source.repo_id = std::string(head);
  if (colon == std::string_view::npos) {
    if (absl::Status s = CheckRepoIdParts(text, head); !s.ok()) return s;
    return source;
  }
  std::string_view rest = text.substr(colon + 1);
  std::size_t second_colon = rest.find(':');
  std::string_view variant = rest.substr(0, second_colon);
  if (!IsRepoVariant(variant)) return std::nullopt;
  source.variant = std::string(variant);
  if (second_colon != std::string_view::npos) {
    std::string_view subfolder = rest.substr(second_colon + 1);
    // "[^:]+" needs one character, and "::/" keeps "/" as the subfolder
    // (the optional '/' gives it back); "owner/name:fp16::vae" has a colon.
    if (subfolder.empty() || subfolder.find(':') != std::string_view::npos) {
      return std::nullopt;
    }
    if (subfolder.size() > 1 && subfolder.front() == '/') {
      subfolder.remove_prefix(1);
    }
    if (absl::Status s = CheckRepoIdParts(text, head); !s.ok()) return s;
    std::vector<std::string> parts;
    for (std::string_view part : Split(subfolder, '+')) {
      absl::StatusOr<std::string> cleaned = CleanSubfolder(text, part);
      if (!cleaned.ok()) return cleaned.status();
      parts.push_back(*std::move(cleaned));
    }
    if (parts.size() == 1 && HasWeightSuffix(parts.front())) {
      source.file_path = std::move(parts.front());
    } else {
      source.subfolders = std::move(parts);
    }
    return source;
  }
  if (absl::Status s = CheckRepoIdParts(text, head); !s.ok()) return s;
  return source;
}

struct UrlParts {
  std::string_view scheme_and_authority;  // "https://host:443"
  std::string_view host;                  // "host"
  std::string_view path;                  // "/a/b", may be empty
  std::string_view query_and_fragment;    // "?x#y", may be empty
};

std::optional<UrlParts> SplitUrl(std::string_view url) {
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  std::size_t authority_start = scheme_end + 3;
  std::size_t authority_end = url.find_first_of("/?#", authority_start);
  if (authority_end == std::string_view::npos) authority_end = url.size();
  std::string_view authority =
      url.substr(authority_start, authority_end - authority_start);
  std::size_t at = authority.rfind('@');
  std::string_view host_port =
      at == std::string_view::npos ? authority : authority.substr(at + 1);
  std::string_view host = host_port;
  if (!host.empty() && host.front() == '[') {
    std::size_t close = host.find(']');
    host = close == std::string_view::npos ? std::string_view()
                                           : host.substr(0, close + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  std::size_t path_end = url.find_first_of("?#", authority_end);
  if (path_end == std::string_view::npos) path_end = url.size();
  return UrlParts{url.substr(0, authority_end), host,
                  url.substr(authority_end, path_end - authority_end),
                  url.substr(path_end)};
}

bool IsOneOf(std::string_view value, const auto& table) {
  return std::find(table.begin(), table.end(), value) != table.end();
}

absl::StatusOr<ModelSource> ParseUrl(std::string_view text) {
  if (text.find(' ') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("model source URL ", QuotedForMessage(text),
                     " contains a space; percent-encode it as %20"));
  }
  std::optional<UrlParts> parts = SplitUrl(text);
  if (!parts.has_value() || parts->host.empty() || parts->host == "[]") {
    return absl::InvalidArgumentError(
        absl::StrCat("model source URL ", QuotedForMessage(text),
                     " has no host; write it as https://host/path"));
  }
  if (!IsOneOf(AsciiLowered(parts->host), kHfHosts)) {
    return UrlSource{std::string(text)};
  }
  // Hugging Face: split the path, keeping empty segments so that
  // "/owner//name" is not taken for a repo.
  std::string_view path = parts->path;
  if (!path.empty()) path.remove_prefix(1);
  if (!path.empty() && path.back() == '/') path.remove_suffix(1);
  std::vector<std::string_view> segments = Split(path, '/');
  if (segments.size() == 2 && !IsOneOf(segments[0], kHfReservedOwners)) {
    std::string repo_id =
        absl::StrCat(AsAbsl(segments[0]), "/", AsAbsl(segments[1]));
    if (LooksLikeRepoId(repo_id) && !segments[0].empty() &&
        segments[0] != "." && segments[0] != ".." && segments[1] != "." &&
        segments[1] != "..") {
      HfRepoSource source;
      source.repo_id = std::move(repo_id);
      return source;
    }
  }
  // A file page "/owner/name/blob/rev/file" downloads from ".../resolve/...".
  // Repos of datasets and spaces have one more leading segment. Rewriting by
  // position keeps the rewrite idempotent (".../resolve/blob/x" stays).
  std::size_t blob_index = (!segments.empty() && (segments[0] == "datasets" ||
                                                  segments[0] == "spaces"))
                               ? 3
                               : 2;
  if (segments.size() > blob_index + 1 && segments[blob_index] == "blob") {
    segments[blob_index] = "resolve";
    std::string url(parts->scheme_and_authority);
    for (std::string_view segment : segments) {
      absl::StrAppend(&url, "/", AsAbsl(segment));
    }
    if (!parts->path.empty() && parts->path.back() == '/') url += '/';
    absl::StrAppend(&url, AsAbsl(parts->query_and_fragment));
    return UrlSource{std::move(url)};
  }
  return UrlSource{std::string(text)};
}

}  // namespace

bool LocalPathExists(std::string_view path) {
  std::error_code error;
  return std::filesystem::exists(std::filesystem::path(path), error);
}

bool HasWeightSuffix(std::string_view name) {
  return std::any_of(
      kWeightSuffixes.begin(), kWeightSuffixes.end(),
      [&](std::string_view suffix) { return EndsWith(name, suffix); });
}

bool IsRepoVariant(std::string_view variant) {
  return IsOneOf(variant, kRepoVariants);
}

absl::StatusOr<ModelSource> ParseModelSource(
    std::string_view text,
    const std::function<bool(std::string_view)>& path_exists) {
  if (absl::Status s = CheckSourceText(text); !s.ok()) return s;
  if (path_exists && path_exists(text)) return LocalSource{std::string(text)};
  if (std::optional<absl::StatusOr<HfRepoSource>> repo = TryParseRepoId(text);
      repo.has_value()) {
    if (!repo->ok()) return repo->status();
    return **std::move(repo);
  }
  if (StartsWithIgnoreCase(text, "http://") ||
      StartsWithIgnoreCase(text, "https://")) {
    return ParseUrl(text);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported model source ", QuotedForMessage(text), ": ", kGrammarHint,
      StartsWith(text, "/") || StartsWith(text, ".") || StartsWith(text, "~")
          ? " (if it is a local path: no such file or directory)"
          : ""));
}

std::string FormatModelSource(const ModelSource& source) {
  if (const auto* local = std::get_if<LocalSource>(&source)) {
    return local->path;
  }
  if (const auto* url = std::get_if<UrlSource>(&source)) return url->url;
  const auto& repo = std::get<HfRepoSource>(source);
  std::string text = repo.repo_id;
  std::string subfolder = repo.file_path;
  for (const std::string& folder : repo.subfolders) {
    if (!subfolder.empty()) subfolder += '+';
    subfolder += folder;
  }
  if (!repo.variant.empty() || !subfolder.empty()) {
    absl::StrAppend(&text, ":", repo.variant);
  }
  if (!subfolder.empty()) absl::StrAppend(&text, ":", subfolder);
  return text;
}

std::string_view SourceTypeName(const ModelSource& source) {
  if (std::holds_alternative<LocalSource>(source)) return "path";
  if (std::holds_alternative<UrlSource>(source)) return "url";
  return "hf_repo_id";
}

}  // namespace mm::model
