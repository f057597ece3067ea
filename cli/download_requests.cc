#include "cli/download_requests.h"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/download_format.h"
#include "common/paging.h"
#include "common/secret_file.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = modelmanager::v1;

// A byte count >= 0, or nullopt.
std::optional<int64_t> ParseSize(const std::string& text) {
  int64_t size = 0;
  if (!absl::SimpleAtoi(text, &size) || size < 0) return std::nullopt;
  return size;
}

// The files of `mm download --files PATH`: one per line, `URL
// RELATIVE_PATH [SIZE [SHA256]]` separated by tabs or spaces (so neither
// may contain whitespace); blank lines and lines starting with `#` are
// skipped. A bad line is a usage error naming PATH and its line number;
// the server checks the paths themselves (safe components, no duplicates).
absl::StatusOr<std::vector<v1::DownloadFile>> ReadFileList(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path, "download list"));
  std::vector<v1::DownloadFile> files;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad_line = [&](const std::string& why) {
      return UsageError(absl::StrCat("--files ", path, " line ", line_number,
                                     ": ", why,
                                     "; expected 'URL RELATIVE_PATH [SIZE "
                                     "[SHA256]]'"));
    };
    if (fields.size() < 2) return bad_line("no relative path after the URL");
    if (fields.size() > 4) {
      return bad_line(
          absl::StrCat("unexpected '", fields[4], "' after the SHA-256"));
    }
    v1::DownloadFile file;
    file.set_url(fields[0]);
    file.set_relative_path(fields[1]);
    if (fields.size() > 2) {
      std::optional<int64_t> size = ParseSize(fields[2]);
      if (!size) {
        return bad_line(absl::StrCat("size '", fields[2],
                                     "' is not a number of bytes >= 0"));
      }
      file.set_size(*size);
    }
    if (fields.size() > 3) {
      std::optional<std::string> sha256 = NormalizeSha256Hex(fields[3]);
      if (!sha256) {
        return bad_line(absl::StrCat("SHA-256 '", fields[3],
                                     "' is not 64 hexadecimal characters"));
      }
      file.set_sha256(*sha256);
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) {
    return UsageError(absl::StrCat("--files ", path,
                                   " lists no files (only blank lines and "
                                   "# comments)"));
  }
  return files;
}

}  // namespace

absl::StatusOr<std::string> ReadUrlAccessToken(const ParsedArgs& args) {
  if (!args.Has("token-file")) return std::string();
  return ReadTokenFile(args.Get("token-file"));
}

absl::StatusOr<v1::CreateDownloadRequest> BuildCreateDownloadRequest(
    const ParsedArgs& args, const fs::path& working_dir) {
  const bool multi = args.Has("files");
  if (multi) {
    if (args.words.size() > 1) {
      return UsageError(absl::StrCat(
          "mm download takes a URL or --files LIST, not both (got URL '",
          args.words[1], "')"));
    }
    for (const char* flag : {"output", "name", "sha256", "size"}) {
      if (args.Has(flag)) {
        return UsageError(absl::StrCat(
            "--", flag,
            " is for a single URL; with --files LIST give the size and "
            "SHA-256 of each file on its line, and --dest for the directory"));
      }
    }
  } else if (args.words.size() < 2) {
    return UsageError("mm download needs a URL or --files LIST");
  }
  if (args.words.size() > 2) {
    return UsageError(absl::StrCat("mm download takes one URL, got also '",
                                   args.words[2], "'"));
  }
  v1::CreateDownloadRequest request;
  if (multi) {
    ASSIGN_OR_RETURN(std::vector<v1::DownloadFile> files,
                     ReadFileList(args.Get("files")));
    for (v1::DownloadFile& file : files) {
      *request.add_files() = std::move(file);
    }
  } else {
    request.set_url(args.words[1]);
  }
  if (args.Has("dest") && args.Has("output")) {
    return UsageError(
        "--dest DIR and --output FILE both name the destination; give one");
  }
  if (args.Has("output") && args.Has("name")) {
    return UsageError(
        "--name sets the file name inside --dest; with --output FILE the "
        "name is FILE's");
  }
  auto absolute = [&](const std::string& path) -> absl::StatusOr<std::string> {
    if (!fs::path(path).is_absolute() && working_dir.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot make '", path,
          "' absolute: the current directory cannot be read; give an "
          "absolute path"));
    }
    return (working_dir / path).lexically_normal().string();
  };
  if (args.Has("dest")) {
    ASSIGN_OR_RETURN(std::string dest, absolute(args.Get("dest")));
    request.set_dest_dir(dest);
  }
  if (args.Has("output")) {
    ASSIGN_OR_RETURN(std::string output, absolute(args.Get("output")));
    request.set_output_path(output);
  }
  if (args.Has("name")) request.set_file_name(args.Get("name"));
  if (args.Has("priority")) {
    int32_t priority = 0;
    if (!absl::SimpleAtoi(args.Get("priority"), &priority)) {
      return UsageError(absl::StrCat(
          "--priority must be a whole number (lower runs first; default 10), "
          "got '",
          args.Get("priority"), "'"));
    }
    request.set_priority(priority);
  }
  if (args.Has("sha256")) {
    std::optional<std::string> sha256 = NormalizeSha256Hex(args.Get("sha256"));
    if (!sha256) {
      return UsageError(
          absl::StrCat("--sha256 must be 64 hexadecimal characters, got '",
                       args.Get("sha256"), "' (", args.Get("sha256").size(),
                       " characters)"));
    }
    request.set_expected_sha256(*sha256);
  }
  if (args.Has("size")) {
    std::optional<int64_t> size = ParseSize(args.Get("size"));
    if (!size) {
      return UsageError(absl::StrCat(
          "--size must be the expected size in bytes (a number >= 0), got '",
          args.Get("size"), "'"));
    }
    request.set_expected_size(*size);
  }
  ASSIGN_OR_RETURN(std::string token, ReadUrlAccessToken(args));
  request.set_access_token(token);
  request.set_keep_partial_on_error(args.Has("keep-partial"));
  if (args.Has("no-start")) request.set_start(false);
  request.set_request_id(args.Get("request-id"));
  return request;
}

absl::StatusOr<v1::ListDownloadsRequest> BuildListDownloadsRequest(
    const ParsedArgs& args) {
  v1::ListDownloadsRequest request;
  for (const std::string& value : args.GetAll("state")) {
    for (absl::string_view name :
         absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      ASSIGN_OR_RETURN(
          v1::DownloadState state,
          ParseDownloadState(std::string(absl::StripAsciiWhitespace(name))));
      request.add_states(state);
    }
  }
  request.set_page_size(kMaxPageSize);
  return request;
}

absl::StatusOr<v1::PruneDownloadsRequest> BuildPruneRequest(
    const ParsedArgs& args) {
  v1::PruneDownloadsRequest request;
  if (!args.Has("before")) return request;
  absl::Time before;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, args.Get("before"), &before,
                       &error)) {
    return UsageError(absl::StrCat(
        "--before must be an RFC 3339 time like 2026-01-02T03:04:05Z, got '",
        args.Get("before"), "'"));
  }
  int64_t seconds = absl::ToUnixSeconds(before);
  request.mutable_ended_before()->set_seconds(seconds);
  request.mutable_ended_before()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(before - absl::FromUnixSeconds(seconds))));
  return request;
}

}  // namespace mm::cli
