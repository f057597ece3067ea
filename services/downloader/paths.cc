#include "services/downloader/paths.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace mm::downloader {
namespace fs = std::filesystem;
namespace {

absl::Status Unsafe(std::string_view what, std::string_view value,
                    std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(what), " ", QuotedForMessage(value),
                   " is not a safe file name: ", AsAbsl(why)));
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::Status ValidateFileName(std::string_view name, std::string_view what) {
  if (name.empty()) return Unsafe(what, name, "empty");
  if (name == "." || name == "..") return Unsafe(what, name, "a dot entry");
  if (name.size() > kMaxFileNameBytes) {
    return Unsafe(what, name,
                  absl::StrCat("longer than ", kMaxFileNameBytes, " bytes"));
  }
  for (char c : name) {
    if (c == '/' || c == '\\') return Unsafe(what, name, "contains a slash");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Unsafe(what, name, "contains a control character");
    }
  }
  if (name.size() >= 2 && name[1] == ':' &&
      ((name[0] >= 'a' && name[0] <= 'z') ||
       (name[0] >= 'A' && name[0] <= 'Z'))) {
    return Unsafe(what, name, "starts with a drive letter");
  }
  return absl::OkStatus();
}

absl::Status ValidateRelativePath(std::string_view path,
                                  std::string_view what) {
  if (path.empty()) return Unsafe(what, path, "empty");
  if (path.front() == '/') return Unsafe(what, path, "absolute");
  if (path.find('\\') != std::string_view::npos) {
    return Unsafe(what, path, "contains a backslash");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string_view component = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos
                                               : slash - start);
    if (absl::Status s = ValidateFileName(component, what); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AsAbsl(what), " ", QuotedForMessage(path),
                       " is not a safe relative path: component ",
                       QuotedForMessage(component), " is not allowed"));
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return absl::OkStatus();
}

std::string FileNameFromUrl(std::string_view url) {
  size_t scheme = url.find("://");
  std::string_view rest =
      scheme == std::string_view::npos ? url : url.substr(scheme + 3);
  size_t end = rest.find_first_of("?#");
  rest = rest.substr(0, end);
  size_t path_start = rest.find('/');
  if (path_start == std::string_view::npos) return "";
  std::string_view path = rest.substr(path_start);
  std::string_view last = path.substr(path.rfind('/') + 1);
  std::string decoded;
  for (size_t i = 0; i < last.size(); ++i) {
    if (last[i] == '%' && i + 2 < last.size() && Hex(last[i + 1]) >= 0 &&
        Hex(last[i + 2]) >= 0) {
      decoded.push_back(
          static_cast<char>(Hex(last[i + 1]) * 16 + Hex(last[i + 2])));
      i += 2;
    } else {
      decoded.push_back(last[i]);
    }
  }
  return decoded;
}

std::string PartialPath(const std::string& final_path) {
  return final_path + kPartialSuffix;
}

void RemovePartialFiles(const Job& job) {
  for (const Part& part : job.parts) {
    if (part.path.empty() || part.done) continue;
    std::error_code ec;
    fs::remove(PartialPath(part.path), ec);
  }
}

absl::StatusOr<DownloadRoots> DownloadRoots::Create(
    const std::vector<std::string>& roots) {
  if (roots.empty()) {
    return absl::InvalidArgumentError("at least one --download-root is needed");
  }
  DownloadRoots out;
  for (const std::string& root : roots) {
    std::error_code ec;
    fs::path canonical = fs::canonical(root, ec);
    if (ec || !fs::is_directory(canonical)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "download root ", QuotedForMessage(root), " is not a directory"));
    }
    out.roots_.push_back(canonical);
  }
  return out;
}

bool DownloadRoots::Inside(const fs::path& canonical) const {
  for (const fs::path& root : roots_) {
    auto [r, c] = std::mismatch(root.begin(), root.end(), canonical.begin(),
                                canonical.end());
    if (r == root.end()) return true;
  }
  return false;
}

absl::StatusOr<fs::path> DownloadRoots::ResolveDirectory(
    const std::string& dir, std::string_view field) const {
  if (dir.empty() || dir.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " must be an absolute path"));
  }
  std::error_code ec;
  fs::path canonical = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(canonical)) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " ", QuotedForMessage(dir),
                     " is not an existing directory"));
  }
  if (!Inside(canonical)) {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " ", QuotedForMessage(dir),
                     " is outside the download roots"));
  }
  return canonical;
}

absl::StatusOr<fs::path> DownloadRoots::ResolveFile(
    const std::string& file, std::string_view field) const {
  if (file.empty() || file.front() != '/' || file.back() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(AsAbsl(field), " must be an absolute file path"));
  }
  fs::path path(file);
  std::string name = path.filename().string();
  if (absl::Status s = ValidateFileName(name, field); !s.ok()) return s;
  absl::StatusOr<fs::path> parent =
      ResolveDirectory(path.parent_path().string(), field);
  if (!parent.ok()) return parent.status();
  fs::path resolved = *parent / name;
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(resolved, ec))) {
    return absl::InvalidArgumentError(absl::StrCat(
        AsAbsl(field), " ", QuotedForMessage(file), " is a symbolic link"));
  }
  return resolved;
}

absl::StatusOr<int64_t> FreeBytes(const fs::path& dir) {
  struct statvfs info;
  if (statvfs(dir.c_str(), &info) != 0) {
    return absl::InternalError(
        absl::StrCat("statvfs ", dir.string(), ": ", std::strerror(errno)));
  }
  return static_cast<int64_t>(info.f_bavail) *
         static_cast<int64_t>(info.f_frsize);
}

}  // namespace mm::downloader
