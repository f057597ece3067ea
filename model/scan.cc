#include "model/scan.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace mm::model {
namespace {

namespace fs = std::filesystem;

// A directory's identity, so a directory reached twice (through a link)
// is walked once.
using DirId = std::pair<uint64_t, uint64_t>;  // (device, inode)

bool DirIdOf(const fs::path& dir, DirId* id) {
  struct stat info;
  if (::stat(dir.c_str(), &info) != 0) return false;
  *id = {static_cast<uint64_t>(info.st_dev),
         static_cast<uint64_t>(info.st_ino)};
  return true;
}

void Walk(const fs::path& dir, int depth, std::set<DirId>& visited,
          std::vector<fs::path>& found) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    MM_LOG(WARNING) << "scan: skipping " << dir.string() << ": "
                    << ec.message();
    return;
  }
  std::vector<fs::path> entries;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) {
      MM_LOG(WARNING) << "scan: stopped listing " << dir.string() << ": "
                      << ec.message();
      break;
    }
    entries.push_back(it->path());
  }
  std::sort(entries.begin(), entries.end());
  for (const fs::path& entry : entries) {
    if (absl::StartsWith(entry.filename().string(), ".")) continue;
    const fs::file_status status = fs::status(entry, ec);  // follows links
    if (ec) continue;                                      // a dangling link
    if (fs::is_directory(status)) {
      if (IsModelDirectory(entry)) {
        found.push_back(entry);
        continue;
      }
      if (depth + 1 > kMaxScanDepth) continue;
      DirId id;
      if (!DirIdOf(entry, &id) || !visited.insert(id).second) continue;
      Walk(entry, depth + 1, visited, found);
    } else if (fs::is_regular_file(status) && IsCandidateModelFile(entry)) {
      found.push_back(entry);
    }
  }
}

}  // namespace

bool IsModelDirectory(const fs::path& dir) {
  static constexpr std::array<const char*, 5> kMarkers = {
      "config.json", "model_index.json", "learned_embeds.bin",
      "pytorch_lora_weights.bin", "image_encoder.txt"};
  for (const char* marker : kMarkers) {
    std::error_code ec;
    if (fs::exists(dir / marker, ec)) return true;
  }
  return false;
}

bool IsCandidateModelFile(const fs::path& file) {
  static constexpr std::array<const char*, 6> kSuffixes = {
      ".ckpt", ".bin", ".pth", ".safetensors", ".pt", ".gguf"};
  const std::string ext = absl::AsciiStrToLower(file.extension().string());
  for (const char* suffix : kSuffixes) {
    if (ext == suffix) return true;
  }
  return false;
}

absl::StatusOr<std::vector<fs::path>> ScanForModels(const fs::path& dir) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (!fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("scan folder ", dir.string(),
                                            " does not exist; check the path"));
  }
  if (!fs::is_directory(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scan folder ", dir.string(),
                     " is not a folder; probe a single file instead"));
  }
  fs::directory_iterator probe(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "scan folder ", dir.string(), " cannot be read: ", ec.message(),
        "; check its permissions"));
  }
  if (IsModelDirectory(dir)) return std::vector<fs::path>{dir};
  std::set<DirId> visited;
  DirId root;
  if (DirIdOf(dir, &root)) visited.insert(root);
  std::vector<fs::path> found;
  Walk(dir, 0, visited, found);
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace mm::model
