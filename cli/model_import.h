// Planning of `mm models import FILE`: reads the model records of another
// installation and turns them into validated configs ready to create, plus
// the entries that cannot be brought over and why. Two sources, recognized
// by content (not by extension):
//   - a legacy v3 models.yaml (InvokeAI 3.x, spec §3): `__metadata__.version`
//     3.0.0 and entries keyed "<base>/<type>/<name>";
//   - an InvokeAI 4+ SQLite database: table `models` (`id`, `config` JSON).
// Planning never changes the source: the database is read from a private
// copy in a temporary directory (the SQL layer opens files read-write).
// Creating the planned records is the caller's job (over the records
// service), so a plan can be shown first (`--dry-run`).
//
// Thread-safety: PlanImport is a pure function of the files it reads; it
// may run on several threads at once.
//
//   ASSIGN_OR_RETURN(ImportPlan plan,
//                    PlanImport("configs/models.yaml",
//                               {.models_dir = "/invokeai/models"}));
//   for (const nlohmann::json& config : plan.configs) Create(config);
#ifndef MM_CLI_MODEL_IMPORT_H_
#define MM_CLI_MODEL_IMPORT_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace mm::cli {

// An entry of the source that is not imported.
struct ImportSkip {
  // The legacy entry key ("sd-1/main/foo") or the database row id.
  std::string entry;
  // Why, e.g. "file not found: /models/foo.safetensors" or the validation
  // message.
  std::string reason;
};

struct ImportPlan {
  // "legacy-yaml" or "invokeai-sqlite".
  std::string source_kind;
  // Normalized configs (model::ValidateConfig's output), in source order
  // (the database's in id order), each with its key.
  std::vector<nlohmann::json> configs;
  std::vector<ImportSkip> skipped;
};

struct ImportOptions {
  // Legacy yaml only: the folder its relative paths are relative to (the
  // InvokeAI root's models folder). Empty (the default): the folder that
  // holds the yaml file. Records keep a path relative to it when the model
  // is inside it, else the absolute path.
  std::filesystem::path models_dir;
  // Legacy yaml only: hash each model with BLAKE3 (spec §5; reads every
  // byte). When false, a placeholder "random:<hex>" hash is written (default
  // true).
  bool hash_files = true;
};

// The plan for `file`. INVALID_ARGUMENT when it is neither a legacy
// models.yaml nor an InvokeAI database (or a database without a `models`
// table); NOT_FOUND when it does not exist; UNAVAILABLE when it cannot be
// read or copied.
absl::StatusOr<ImportPlan> PlanImport(const std::filesystem::path& file,
                                      const ImportOptions& options);

}  // namespace mm::cli

#endif  // MM_CLI_MODEL_IMPORT_H_
