// Where the downloader may write: names and paths from clients and servers
// are checked before anything touches the disk (spec §7), and every
// destination must resolve (after `..` and symlinks) inside one of the
// configured download roots.
//
// Thread-safety: pure functions; DownloadRoots is immutable after Create.
#ifndef MM_SERVICES_DOWNLOADER_PATHS_H_
#define MM_SERVICES_DOWNLOADER_PATHS_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "services/downloader/job.h"

namespace mm::downloader {

// Longest file name accepted (bytes), as most file systems allow.
inline constexpr size_t kMaxFileNameBytes = 255;

// OK when `name` is one safe path component: not empty, not "." or "..",
// no '/', '\\' or NUL, no drive letter ("C:"), no control characters, at
// most kMaxFileNameBytes. INVALID_ARGUMENT naming `what` otherwise.
absl::Status ValidateFileName(std::string_view name, std::string_view what);

// OK when `path` is a relative path of safe components ("unet/model.bin"):
// not absolute, no "..", no empty components, each ValidateFileName-safe.
absl::Status ValidateRelativePath(std::string_view path, std::string_view what);

// The last path segment of a URL (percent-decoded, query and fragment
// dropped), or "" when there is none.
std::string FileNameFromUrl(std::string_view url);

// The suffix of partial files.
inline constexpr char kPartialSuffix[] = ".downloading";
std::string PartialPath(const std::string& final_path);

// Removes the partial files of `job`'s unfinished parts (finished files
// stay). Missing files are fine.
void RemovePartialFiles(const Job& job);

class DownloadRoots {
 public:
  // Each root must be an existing directory; they are canonicalized.
  static absl::StatusOr<DownloadRoots> Create(
      const std::vector<std::string>& roots);

  const std::vector<std::filesystem::path>& roots() const { return roots_; }

  // Canonical form of an existing directory `dir` if it lies inside a root;
  // INVALID_ARGUMENT naming `field` otherwise (also for a missing one).
  absl::StatusOr<std::filesystem::path> ResolveDirectory(
      const std::string& dir, std::string_view field) const;
  // For a file path: its (existing) parent is resolved as above and the
  // name validated; the file itself need not exist. A path whose final
  // component is an existing symlink is refused.
  absl::StatusOr<std::filesystem::path> ResolveFile(
      const std::string& file, std::string_view field) const;

 private:
  bool Inside(const std::filesystem::path& canonical) const;
  std::vector<std::filesystem::path> roots_;
};

// Bytes available to an unprivileged writer in the file system of `dir`.
absl::StatusOr<int64_t> FreeBytes(const std::filesystem::path& dir);

}  // namespace mm::downloader

#endif  // MM_SERVICES_DOWNLOADER_PATHS_H_
