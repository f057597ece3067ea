#include "services/installer/placement.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::installer {
namespace {

namespace fs = std::filesystem;

// Hidden names in the models folder for a copy in progress: never a key (keys
// are hex) and never scanned as a model (a leading dot).
constexpr char kPlacingPrefix[] = ".placing-";

absl::StatusCode CodeForErrno(int error) {
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::StatusCode::kNotFound;
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::StatusCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
      return absl::StatusCode::kResourceExhausted;
    case EEXIST:
    case ENOTEMPTY:
      return absl::StatusCode::kAlreadyExists;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status FileError(int error, std::string_view what, const fs::path& path) {
  return absl::Status(
      CodeForErrno(error),
      absl::StrCat(AsAbsl(what), " ", QuotedForMessage(path.string()), ": ",
                   ::strerror(error)));
}

absl::Status FileError(const std::error_code& error, std::string_view what,
                       const fs::path& path) {
  return FileError(error.value(), what, path);
}

// lstat without following a final symbolic link; nullopt when absent.
absl::StatusOr<std::optional<struct stat>> LinkStatus(const fs::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) return st;
  if (errno == ENOENT) return std::nullopt;
  return FileError(errno, "cannot inspect", path);
}

absl::Status SyncPath(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(),
                        (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(errno, "cannot open to sync", path);
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) return FileError(error, "cannot sync", path);
  return absl::OkStatus();
}

absl::Status CopyFileSynced(const fs::path& from, const fs::path& to) {
  std::error_code error;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, error);
  if (error) return FileError(error, "cannot copy to", to);
  return SyncPath(to, /*directory=*/false);
}

// Copies a file or a folder tree to `to` (which must not exist), syncing
// every file and folder. Symbolic links are refused: copying one would
// either duplicate whatever it points at (possibly outside the source) or
// leave a link that means something else in the models folder.
absl::Status CopyTreeSynced(const fs::path& from, const fs::path& to) {
  ASSIGN_OR_RETURN(std::optional<struct stat> st, LinkStatus(from));
  if (!st) return FileError(ENOENT, "cannot copy", from);
  if (S_ISLNK(st->st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot copy the symbolic link ", QuotedForMessage(from.string()),
        " into the models folder; replace it by the file it "
        "points at, or install in place"));
  }
  if (S_ISREG(st->st_mode)) return CopyFileSynced(from, to);
  if (!S_ISDIR(st->st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(QuotedForMessage(from.string()),
                     " is neither a regular file nor a folder"));
  }
  std::error_code error;
  fs::create_directory(to, error);
  if (error) return FileError(error, "cannot create folder", to);
  fs::directory_iterator it(from, error);
  if (error) return FileError(error, "cannot list folder", from);
  for (; it != fs::directory_iterator(); it.increment(error)) {
    RETURN_IF_ERROR(CopyTreeSynced(it->path(), to / it->path().filename()));
  }
  if (error) return FileError(error, "cannot list folder", from);
  return SyncPath(to, /*directory=*/true);
}

absl::Status RemoveTree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
  if (error) return FileError(error, "cannot remove", path);
  return absl::OkStatus();
}

}  // namespace

PlacedModel PlannedPlacement(const fs::path& models_dir, const std::string& key,
                             const fs::path& source, bool is_dir) {
  if (is_dir) return {models_dir / key, key};
  const std::string name = source.filename().string();
  return {models_dir / key / name, absl::StrCat(key, "/", name)};
}

absl::StatusOr<PlacedModel> PlaceModel(const fs::path& source,
                                       const fs::path& models_dir,
                                       const std::string& key) {
  if (key.empty() || key.find('/') != std::string::npos || key[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot place a model under the key ", QuotedForMessage(key)));
  }
  const fs::path key_dir = models_dir / key;
  ASSIGN_OR_RETURN(std::optional<struct stat> source_st, LinkStatus(source));
  ASSIGN_OR_RETURN(std::optional<struct stat> key_st, LinkStatus(key_dir));

  if (!source_st) {
    // Placed by an earlier attempt that stopped before it could say so.
    if (key_st && S_ISDIR(key_st->st_mode)) {
      const fs::path file = key_dir / source.filename();
      std::error_code error;
      if (fs::exists(file, error))
        return PlannedPlacement(models_dir, key, source, false);
      return PlannedPlacement(models_dir, key, source, true);
    }
    return FileError(ENOENT, "cannot install", source);
  }
  if (!S_ISREG(source_st->st_mode) && !S_ISDIR(source_st->st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(QuotedForMessage(source.string()),
                     " is neither a regular file nor a folder"));
  }
  const bool is_dir = S_ISDIR(source_st->st_mode);
  const PlacedModel placed = PlannedPlacement(models_dir, key, source, is_dir);

  if (key_st) {
    // A copy across filesystems was published but the source not yet
    // removed: finish by removing it.
    std::error_code error;
    if (is_dir || fs::exists(placed.absolute, error)) {
      if (!is_dir || !fs::is_empty(key_dir, error)) {
        RETURN_IF_ERROR(RemoveTree(source));
        return placed;
      }
      // An empty models/<key>/ left by a rename that did not happen.
      fs::remove(key_dir, error);
      if (error) return FileError(error, "cannot remove", key_dir);
    }
  }

  // Same filesystem: one rename, no copy.
  if (is_dir) {
    if (::rename(source.c_str(), key_dir.c_str()) == 0) {
      RETURN_IF_ERROR(SyncPath(models_dir, /*directory=*/true));
      return placed;
    }
  } else {
    if (::mkdir(key_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return FileError(errno, "cannot create folder", key_dir);
    }
    if (::rename(source.c_str(), placed.absolute.c_str()) == 0) {
      RETURN_IF_ERROR(SyncPath(key_dir, /*directory=*/true));
      RETURN_IF_ERROR(SyncPath(models_dir, /*directory=*/true));
      return placed;
    }
  }
  if (errno != EXDEV)
    return FileError(errno, "cannot move into", placed.absolute);

  // Across filesystems: copy under a hidden name, publish with one rename,
  // then remove the source.
  const fs::path staging = models_dir / absl::StrCat(kPlacingPrefix, key);
  RETURN_IF_ERROR(RemoveTree(staging));  // a copy an earlier crash left
  absl::Status copied;
  if (is_dir) {
    copied = CopyTreeSynced(source, staging);
  } else {
    std::error_code error;
    fs::create_directory(staging, error);
    copied = error ? FileError(error, "cannot create folder", staging)
                   : CopyTreeSynced(source, staging / source.filename());
    if (copied.ok()) copied = SyncPath(staging, /*directory=*/true);
  }
  if (!copied.ok()) {
    // Nothing half-copied stays in the models folder; the source is intact.
    RemoveTree(staging).IgnoreError();
    if (!is_dir) ::rmdir(key_dir.c_str());
    return copied;
  }
  if (!is_dir) ::rmdir(key_dir.c_str());  // made for the failed rename
  if (::rename(staging.c_str(), key_dir.c_str()) != 0) {
    const int error = errno;
    RemoveTree(staging).IgnoreError();
    return FileError(error, "cannot move into", key_dir);
  }
  RETURN_IF_ERROR(SyncPath(models_dir, /*directory=*/true));
  RETURN_IF_ERROR(RemoveTree(source));
  return placed;
}

bool IsInsideModelsDir(const fs::path& path, const fs::path& models_dir) {
  std::error_code error;
  const fs::path dir = fs::weakly_canonical(fs::absolute(models_dir), error);
  if (error) return false;
  const fs::path target = fs::weakly_canonical(fs::absolute(path), error);
  if (error) return false;
  auto dir_it = dir.begin();
  auto target_it = target.begin();
  for (; dir_it != dir.end(); ++dir_it, ++target_it) {
    if (dir_it->empty()) continue;  // a trailing separator
    if (target_it == target.end() || *dir_it != *target_it) return false;
  }
  return target_it != target.end();  // the folder itself is not inside it
}

std::string RecordPathFor(const fs::path& path, const fs::path& models_dir) {
  if (!IsInsideModelsDir(path, models_dir)) return path.string();
  // Both resolved as IsInsideModelsDir resolves them, so a models folder
  // reached through a symbolic link still gives a path inside it.
  return fs::weakly_canonical(path)
      .lexically_relative(fs::weakly_canonical(models_dir))
      .string();
}

fs::path ResolveModelPath(const fs::path& models_dir,
                          const std::string& record_path) {
  const fs::path path(record_path);
  return path.is_absolute() ? path : models_dir / path;
}

absl::StatusOr<std::vector<std::string>> RemoveModelFiles(
    const fs::path& models_dir, const std::string& key,
    const std::string& record_path, bool unconditionally) {
  std::vector<std::string> removed;
  const fs::path path = ResolveModelPath(models_dir, record_path);
  fs::path target = path;
  if (IsInsideModelsDir(path, models_dir)) {
    // models/<key>/... : the whole folder of the key goes.
    const fs::path relative = RecordPathFor(path, models_dir);
    if (!key.empty() && !relative.empty() && *relative.begin() == key) {
      target = models_dir / key;
    }
  } else if (!unconditionally) {
    return removed;
  }
  ASSIGN_OR_RETURN(std::optional<struct stat> st, LinkStatus(target));
  if (!st) return removed;
  RETURN_IF_ERROR(RemoveTree(target));
  removed.push_back(target.string());
  return removed;
}

}  // namespace mm::installer
