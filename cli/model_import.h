// Planning of `mm models import FILE`: reads the model records of another
// installation and turns them into validated configs ready to create, plus
// the entries that cannot be brought over and why. Two sources, recognized
// by content (not by extension):
//   - a legacy v3 models.yaml (InvokeAI 3.x, spec §3): `__metadata__.version`
//     3.0.0 and entries keyed "<base>/<type>/<name>";
//   - an InvokeAI 4+ SQLite database (through the 6.x releases): table
//     `models` (`id`, `config` JSON).
// Model paths that are relative in the source are resolved against the
// imported installation's models folder and stored absolute unless they lie
// inside the target's models folder (ImportOptions).
// Planning never changes the source: the database is read from a private
// copy in a temporary directory (the SQL layer opens files read-write).
// Creating the planned records is the caller's job (over the records
// service), so a plan can be shown first (`--dry-run`).
//
// Thread-safety: PlanImport is a pure function of the files it reads; it
// may run on several threads at once.
//
//   ASSIGN_OR_RETURN(ImportPlan plan,
//                    PlanImport("/invokeai/configs/models.yaml",
//                               {.target_models_dir = "/srv/mm/models"}));
//   for (const nlohmann::json& config : plan.configs) Create(config);
#ifndef MM_CLI_MODEL_IMPORT_H_
#define MM_CLI_MODEL_IMPORT_H_

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace mm::cli {

// Why an entry is not imported, for counting; ImportSkip::reason says it in
// full. Each has a stable snake_case name (SkipReasonName) used in --json
// output and the summary line.
enum class SkipReason {
  // The entry itself is malformed: a legacy key not "<base>/<type>/<name>",
  // no path, a database row whose config is not a JSON object.
  kInvalidEntry,
  // Legacy yaml: the model's file or folder does not exist.
  kFileNotFound,
  // Legacy yaml: the model exists but cannot be read (stat, list, hash).
  kUnreadable,
  // type/format/base name no registered family (docs/taxonomy.md).
  kUnknownFamily,
  // A field fails validation; the reason names it.
  kInvalidField,
  // Another entry of the same source already brings this path.
  kDuplicatePath,
  // The records service already holds a record with this path or key.
  kAlreadyExists,
  // The records service refused the record for another reason.
  kRejected,
};
// "invalid_entry", "file_not_found", "unreadable", "unknown_family",
// "invalid_field", "duplicate_path", "already_exists", "rejected".
std::string_view SkipReasonName(SkipReason reason);

// An entry of the source that is not imported.
struct ImportSkip {
  // The legacy entry key ("sd-1/main/foo") or the database row id.
  std::string entry;
  // The model's name where the entry gives one (the legacy key's last
  // part, the row's `name`); empty when the entry has none.
  std::string name;
  SkipReason code = SkipReason::kInvalidEntry;
  // Why, e.g. "file not found: /models/foo.safetensors" or the validation
  // message.
  std::string reason;
};

// Something the user should know about an entry that is imported anyway.
struct ImportNote {
  std::string entry;
  std::string name;
  // E.g. "file not found: /invokeai/models/x.safetensors; the record is
  // kept".
  std::string message;
};

struct ImportPlan {
  // "legacy-yaml" or "invokeai-sqlite".
  std::string source_kind;
  // The folder relative paths of the source were read against (absolute):
  // ImportOptions::models_dir or its default.
  std::filesystem::path models_dir;
  // Normalized configs (model::ValidateConfig's output), in source order
  // (the database's in id order), each with its key.
  std::vector<nlohmann::json> configs;
  // The source entry of each config (config_entries[i] for configs[i]), for
  // reports: the legacy entry key or the database row id.
  std::vector<std::string> config_entries;
  std::vector<ImportSkip> skipped;
  std::vector<ImportNote> notes;
};

struct ImportOptions {
  // The folder the source's relative model paths are relative to: the
  // imported installation's models folder. Empty (the default): found from
  // where the source lies, as InvokeAI lays out its root: <root>/models for
  // <root>/configs/models.yaml and <root>/databases/invokeai.db; otherwise
  // the folder that holds the source file.
  std::filesystem::path models_dir;
  // The models folder of the system imported into (`mm up` uses
  // <state dir>/models). A model inside it is stored relative to it (spec
  // §2), every other one with its absolute path, so the records resolve
  // wherever they are read. Empty: every path is stored absolute.
  std::filesystem::path target_models_dir;
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
