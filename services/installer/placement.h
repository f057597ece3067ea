// Where installed models live in the models folder, and how they get there
// (spec §8, ours): a file lands at models/<key>/<file name>, a folder's
// contents become models/<key>/, and the record's path is relative to the
// models folder ("<key>/<file name>" or "<key>").
//
// Moving is a rename when the source and the models folder share a
// filesystem, so no byte is copied. Across filesystems the files are copied
// under a hidden name in the models folder, fsync'ed, published with one
// rename, and only then is the source removed: a crash at any point leaves
// the source or the placed copy complete, never neither. PlaceModel is
// idempotent, so an install that restarts after a crash calls it again and
// finishes the same placement.
//
//   ASSIGN_OR_RETURN(PlacedModel placed,
//                    PlaceModel("/tmp/sd15.safetensors", "/models", key));
//   config["path"] = placed.record_path;   // "<key>/sd15.safetensors"
//
// Thread-safety: functions, safe to call concurrently for different keys.
#ifndef MM_SERVICES_INSTALLER_PLACEMENT_H_
#define MM_SERVICES_INSTALLER_PLACEMENT_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace mm::installer {

struct PlacedModel {
  // models/<key>/<file name>, or models/<key> for a folder.
  std::filesystem::path absolute;
  // The same, relative to the models folder: what the record stores.
  std::string record_path;
};

// Where PlaceModel puts `source` (nothing is touched).
PlacedModel PlannedPlacement(const std::filesystem::path& models_dir,
                             const std::string& key,
                             const std::filesystem::path& source, bool is_dir);

// Moves `source` (a file or folder) into models_dir/<key>. Errors:
// NOT_FOUND when neither the source nor an earlier placement exists,
// ALREADY_EXISTS when models/<key> holds something else, INVALID_ARGUMENT
// for a symbolic link inside a folder that must be copied across
// filesystems (it could lead anywhere) or a source that is not a regular
// file or folder, and the filesystem's errors (PERMISSION_DENIED,
// RESOURCE_EXHAUSTED for a full disk, ...), each naming the path.
absl::StatusOr<PlacedModel> PlaceModel(const std::filesystem::path& source,
                                       const std::filesystem::path& models_dir,
                                       const std::string& key);

// Whether `path` is inside `models_dir` once both are made absolute and
// their symbolic links resolved (as far as they exist).
bool IsInsideModelsDir(const std::filesystem::path& path,
                       const std::filesystem::path& models_dir);

// The path a record keeps for a model at `path`: relative to the models
// folder when inside it (ResolveModelPath turns it back), else `path`.
std::string RecordPathFor(const std::filesystem::path& path,
                          const std::filesystem::path& models_dir);

// The model's path on disk: a relative record path is relative to the
// models folder.
std::filesystem::path ResolveModelPath(const std::filesystem::path& models_dir,
                                       const std::string& record_path);

// Removes a model's files (spec §8 delete / unconditionally_delete). Inside
// the models folder, a model placed in models/<key>/ loses that whole
// folder; any other path is removed itself (a file, or a folder with its
// contents). Outside the models folder nothing is removed unless
// `unconditionally`. Returns the paths removed (none when the files were
// already gone). Errors: the filesystem's, naming the path.
absl::StatusOr<std::vector<std::string>> RemoveModelFiles(
    const std::filesystem::path& models_dir, const std::string& key,
    const std::string& record_path, bool unconditionally);

}  // namespace mm::installer

#endif  // MM_SERVICES_INSTALLER_PLACEMENT_H_
