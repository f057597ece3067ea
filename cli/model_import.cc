#include "cli/model_import.h"

#include <stdlib.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/sql/database.h"
#include "common/status.h"
#include "common/strings.h"
#include "model/config_validation.h"
#include "model/hashing.h"
#include "model/taxonomy.h"
#include "yaml-cpp/yaml.h"

namespace mm::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kLegacyVersion[] = "3.0.0";
constexpr char kMetadataKey[] = "__metadata__";
// The first 16 bytes of every SQLite 3 database file.
constexpr char kSqliteMagic[] = "SQLite format 3";  // + its NUL: 16 bytes
// A models.yaml is a few KB to a few MB; anything far larger is not one
// and is not worth parsing.
constexpr uintmax_t kMaxLegacyYamlBytes = 64 << 20;

absl::Status NotAnImportSource(const fs::path& file, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      file.string(), " is not a legacy models.yaml or an InvokeAI database (",
      std::string(why),
      "); pass InvokeAI 3's configs/models.yaml or the "
      "databases/invokeai.db of InvokeAI 4 to 6"));
}

// Common fields plus those of the config's family.
bool FamilyAllows(const model::FamilySpec* family, std::string_view field) {
  for (const model::FieldSpec& spec : model::CommonFields()) {
    if (spec.name == field) return true;
  }
  return family != nullptr && family->FindField(field) != nullptr;
}

// Why one entry is not imported.
struct Rejected {
  SkipReason code;
  std::string message;
};
// An entry's validated config, or why it is not imported.
using EntryResult = std::variant<json, Rejected>;

Rejected Reject(SkipReason code, const absl::Status& status) {
  return {code, std::string(status.message())};
}

// The folder an installation's relative model paths are relative to:
// InvokeAI keeps configs/models.yaml and databases/invokeai.db beside
// models/ in its root folder.
fs::path DefaultModelsDir(const fs::path& file, std::string_view home) {
  const fs::path folder = fs::absolute(file).lexically_normal().parent_path();
  if (folder.filename() == home) return folder.parent_path() / "models";
  return folder;
}

// `dir` absolute and normalized, without a trailing separator.
fs::path CleanDir(const fs::path& dir) {
  if (dir.empty()) return {};
  fs::path clean = fs::absolute(dir).lexically_normal();
  if (!clean.has_filename() && clean.has_parent_path() &&
      clean != clean.root_path()) {
    clean = clean.parent_path();
  }
  return clean;
}

// `path` lexically below `dir` (relative, without ".."), or empty. Both
// are absolute and normalized.
fs::path RelativeInside(const fs::path& path, const fs::path& dir) {
  if (dir.empty()) return {};
  fs::path relative = path.lexically_relative(dir);
  if (relative.empty() || relative == "." || *relative.begin() == "..") {
    return {};
  }
  return relative;
}

// Spec §2: relative to the target's models folder when inside it, else
// absolute, so the record resolves without knowing the source's layout.
std::string RecordPath(const fs::path& on_disk, const fs::path& target) {
  const fs::path absolute = fs::absolute(on_disk).lexically_normal();
  const fs::path inside = RelativeInside(absolute, target);
  return inside.empty() ? absolute.string() : inside.string();
}

// ---------------------------------------------------------------------------
// Legacy v3 models.yaml

// The format InvokeAI 3 implied when an entry names none.
std::string InferLegacyFormat(const std::string& type, bool is_folder) {
  if (type == "main" || type == "vae" || type == "controlnet") {
    return is_folder ? "diffusers" : "checkpoint";
  }
  if (type == "lora") return is_folder ? "diffusers" : "lycoris";
  if (type == "embedding") {
    return is_folder ? "embedding_folder" : "embedding_file";
  }
  if (type == "ip_adapter") return is_folder ? "invokeai" : "checkpoint";
  if (type == "clip_vision" || type == "t2i_adapter") return "diffusers";
  if (type == "onnx") return "onnx";
  return "";
}

// Bytes of a file, or of every regular file below a folder.
absl::StatusOr<uint64_t> SizeOnDisk(const fs::path& path) {
  std::error_code error;
  if (!fs::is_directory(path, error)) {
    uintmax_t size = fs::file_size(path, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot stat ", path.string(), ": ", error.message()));
    }
    return size;
  }
  uint64_t total = 0;
  fs::recursive_directory_iterator it(path, error), end;
  for (; !error && it != end; it.increment(error)) {
    if (it->is_regular_file(error)) total += it->file_size(error);
    if (error) break;
  }
  if (error) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", path.string(), ": ", error.message()));
  }
  return total;
}

// The field's text, or an error naming it when it is not a scalar.
absl::StatusOr<std::string> TextField(const YAML::Node& entry,
                                      const char* field) {
  const YAML::Node value = entry[field];
  if (!value.IsDefined() || value.IsNull()) return std::string();
  if (!value.IsScalar()) {
    return absl::InvalidArgumentError(
        absl::StrCat("field '", field, "' must be a string"));
  }
  return value.Scalar();
}

// The name part of a legacy key "<base>/<type>/<name>", or "" when the key
// does not have that form.
std::string LegacyName(const std::string& entry_key) {
  const size_t first = entry_key.find('/');
  const size_t second =
      first == std::string::npos ? first : entry_key.find('/', first + 1);
  if (second == std::string::npos || first == 0 || second == first + 1 ||
      second + 1 == entry_key.size()) {
    return "";
  }
  return entry_key.substr(second + 1);
}

// One legacy entry as a validated config, or why it cannot be.
EntryResult LegacyEntryConfig(const std::string& entry_key,
                              const YAML::Node& entry,
                              const fs::path& models_dir,
                              const ImportOptions& options) {
  if (!entry.IsMap()) {
    return Rejected{SkipReason::kInvalidEntry, "the entry is not a mapping"};
  }
  const std::string name = LegacyName(entry_key);
  if (name.empty()) {
    return Rejected{SkipReason::kInvalidEntry,
                    "the entry key is not of the form <base>/<type>/<name>"};
  }
  const size_t first = entry_key.find('/');
  const std::string base = entry_key.substr(0, first);
  const std::string type =
      entry_key.substr(first + 1, entry_key.size() - name.size() - first - 2);

  // The v3 fields; absent ones read as "".
  std::map<std::string, std::string> text;
  for (const char* field :
       {"path", "description", "format", "config", "variant"}) {
    absl::StatusOr<std::string> value = TextField(entry, field);
    if (!value.ok()) return Reject(SkipReason::kInvalidEntry, value.status());
    text[field] = *std::move(value);
  }
  const std::string& path_text = text["path"];
  const std::string& description = text["description"];
  std::string format = text["format"];
  const std::string& config_path = text["config"];
  const std::string& variant = text["variant"];
  if (path_text.empty()) {
    return Rejected{SkipReason::kInvalidEntry, "the entry has no 'path'"};
  }

  const fs::path written(path_text);
  const fs::path on_disk =
      (written.is_absolute() ? written : models_dir / written)
          .lexically_normal();
  std::error_code error;
  if (!fs::exists(on_disk, error)) {
    std::string message = absl::StrCat("file not found: ", on_disk.string());
    if (!written.is_absolute()) {
      absl::StrAppend(&message, " (the yaml's relative paths are read from ",
                      models_dir.string(),
                      "; pass --models-dir if its models are elsewhere)");
    }
    return Rejected{SkipReason::kFileNotFound, message};
  }
  const bool is_folder = fs::is_directory(on_disk, error);
  if (format.empty()) format = InferLegacyFormat(type, is_folder);

  json config = {{"key", NewResourceId()},
                 {"name", name},
                 {"base", base},
                 {"type", type},
                 {"format", format},
                 {"path", RecordPath(on_disk, options.target_models_dir)},
                 {"source", on_disk.string()},
                 {"source_type", "path"}};
  if (!description.empty()) config["description"] = description;
  // Only where the family has the field: InvokeAI 3 wrote `variant` and
  // `config` on families that have no such field today.
  const model::FamilySpec* family = model::FindFamily(model::ConfigTag(config));
  if (!config_path.empty() && FamilyAllows(family, "config_path")) {
    config["config_path"] = config_path;
  }
  if (!variant.empty() && FamilyAllows(family, "variant")) {
    config["variant"] = variant;
  }

  absl::StatusOr<uint64_t> size = SizeOnDisk(on_disk);
  if (!size.ok()) return Reject(SkipReason::kUnreadable, size.status());
  config["file_size"] = *size;
  model::HashOptions hash_options;
  if (!options.hash_files) {
    hash_options.algorithm = model::HashAlgorithm::kRandom;
  }
  absl::StatusOr<std::string> hash = model::HashPath(on_disk, hash_options);
  if (!hash.ok()) {
    return Reject(SkipReason::kUnreadable,
                  Annotate(hash.status(),
                           absl::StrCat("cannot hash ", on_disk.string())));
  }
  config["hash"] = *hash;
  absl::StatusOr<json> valid = model::ValidateConfig(config);
  if (!valid.ok()) {
    return Reject(family == nullptr ? SkipReason::kUnknownFamily
                                    : SkipReason::kInvalidField,
                  valid.status());
  }
  return *std::move(valid);
}

absl::StatusOr<ImportPlan> PlanLegacyYaml(const YAML::Node& root,
                                          const ImportOptions& options,
                                          const fs::path& models_dir) {
  ImportPlan plan;
  plan.source_kind = "legacy-yaml";
  plan.models_dir = models_dir;
  // path -> entry, so two entries for one model do not both go in.
  std::map<std::string, std::string> paths;
  for (const auto& item : root) {
    const std::string entry_key = item.first.Scalar();
    if (entry_key == kMetadataKey) continue;
    const std::string name = LegacyName(entry_key);
    EntryResult result =
        LegacyEntryConfig(entry_key, item.second, models_dir, options);
    if (auto* rejected = std::get_if<Rejected>(&result)) {
      plan.skipped.push_back(
          {entry_key, name, rejected->code, std::move(rejected->message)});
      continue;
    }
    json& config = std::get<json>(result);
    const std::string path = config["path"].get<std::string>();
    auto [it, inserted] = paths.emplace(path, entry_key);
    if (!inserted) {
      plan.skipped.push_back(
          {entry_key, name, SkipReason::kDuplicatePath,
           absl::StrCat("path ", path, " is already imported by entry ",
                        it->second)});
      continue;
    }
    plan.configs.push_back(std::move(config));
    plan.config_entries.push_back(entry_key);
  }
  return plan;
}

// ---------------------------------------------------------------------------
// InvokeAI SQLite database

// A private directory removed with everything in it when this dies.
class ScratchDir {
 public:
  static absl::StatusOr<ScratchDir> Create() {
    std::error_code error;
    std::string base =
        (fs::temp_directory_path(error) / "mm-import-XXXXXX").string();
    if (error || ::mkdtemp(base.data()) == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot create a temporary directory for the import in ",
                       fs::temp_directory_path(error).string(),
                       "; set TMPDIR to a writable folder"));
    }
    return ScratchDir(base);
  }
  ScratchDir(ScratchDir&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
  }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  explicit ScratchDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// True when the config names a type, format and base as strings (so a
// failure to find its family means the combination is not registered).
bool HasTriple(const json& config) {
  for (const char* part : {"type", "format", "base"}) {
    auto it = config.find(part);
    if (it == config.end() || !it->is_string()) return false;
  }
  return true;
}

// One InvokeAI row as a validated config, or why it cannot be. Adds to
// `notes` what the user should know about a row that is kept.
EntryResult InvokeAiRowConfig(const std::string& id,
                              const std::optional<std::string>& text,
                              const fs::path& models_dir,
                              const fs::path& target_models_dir,
                              std::vector<std::string>& notes) {
  auto invalid_entry = [](std::string message) {
    return Rejected{SkipReason::kInvalidEntry, std::move(message)};
  };
  if (id.empty()) return invalid_entry("the row has no id");
  if (!text.has_value() || text->empty()) {
    return invalid_entry("the row's config is empty");
  }
  json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return invalid_entry("the row's config is not valid JSON");
  }
  if (!config.is_object()) {
    return invalid_entry(absl::StrCat("the row's config is a JSON ",
                                      config.type_name(), ", not an object"));
  }
  config["key"] = id;
  // InvokeAI's conversion bookkeeping; not part of a record (spec §2).
  config.erase("converted_at");
  // The release writes every field of its class, unset ones as null: a
  // null says nothing, so one our family of the record does not have is
  // dropped instead of failing the record. Inside default_settings every
  // null goes (ValidateConfig writes the known sub-keys back as null).
  const model::FamilySpec* family = model::FindFamily(model::ConfigTag(config));
  for (auto it = config.begin(); it != config.end();) {
    if (it->is_null() && !FamilyAllows(family, it.key())) {
      it = config.erase(it);
    } else {
      ++it;
    }
  }
  if (auto it = config.find("default_settings");
      it != config.end() && it->is_object()) {
    for (auto sub = it->begin(); sub != it->end();) {
      sub = sub->is_null() ? it->erase(sub) : std::next(sub);
    }
  }
  // A model page link is not worth losing the model for: the release
  // takes any string here, we only http(s) links (spec §2).
  if (auto it = config.find("source_url");
      it != config.end() && !it->is_null() &&
      !(it->is_string() && model::IsHttpUrl(it->get<std::string>()))) {
    notes.push_back(absl::StrCat(
        "source_url ", it->dump(-1, ' ', false, json::error_handler_t::replace),
        " is not an http(s) URL and is left out"));
    config.erase(it);
  }
  // The release stores paths relative to its models folder.
  if (auto it = config.find("path"); it != config.end() && it->is_string() &&
                                     !it->get<std::string>().empty()) {
    const fs::path written(it->get<std::string>());
    const fs::path on_disk =
        (written.is_absolute() ? written : models_dir / written)
            .lexically_normal();
    std::error_code error;
    if (!fs::exists(on_disk, error)) {
      notes.push_back(absl::StrCat(
          "file not found: ", on_disk.string(), "; the record is kept",
          written.is_absolute()
              ? ""
              : absl::StrCat(" (relative paths are read from ",
                             models_dir.string(),
                             "; pass --models-dir if InvokeAI's models "
                             "folder is elsewhere)")));
    }
    *it = RecordPath(on_disk, target_models_dir);
  }
  absl::StatusOr<json> valid = model::ValidateConfig(config);
  if (!valid.ok()) {
    return Reject(family == nullptr && HasTriple(config)
                      ? SkipReason::kUnknownFamily
                      : SkipReason::kInvalidField,
                  valid.status());
  }
  return *std::move(valid);
}

absl::Status CopySqliteFiles(const fs::path& file, const fs::path& copy) {
  std::error_code error;
  fs::copy_file(file, copy, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat("cannot copy ", file.string(),
                                               " to ", copy.string(), ": ",
                                               error.message()));
  }
  // Committed changes still in the write-ahead log, or a hot rollback
  // journal, belong to the database too; SQLite applies them on open.
  for (const char* suffix : {"-wal", "-journal"}) {
    const fs::path side = fs::path(file.string() + suffix);
    if (!fs::exists(side, error)) continue;
    fs::copy_file(side, fs::path(copy.string() + suffix), error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot copy ", side.string(), ": ", error.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ImportPlan> PlanInvokeAiDatabase(const fs::path& file,
                                                const ImportOptions& options,
                                                const fs::path& models_dir) {
  ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  const fs::path copy = scratch.path() / "invokeai.db";
  RETURN_IF_ERROR(CopySqliteFiles(file, copy));
  const std::string context =
      absl::StrCat("reading InvokeAI database ", file.string());
  sql::Options sql_options;
  sql_options.pool_size = 1;
  absl::StatusOr<std::unique_ptr<sql::Database>> db =
      sql::Database::OpenSqlite(copy.string(), sql_options);
  if (!db.ok()) return Annotate(db.status(), context);

  absl::StatusOr<sql::Result> columns =
      (*db)->Execute("SELECT name FROM pragma_table_info('models')");
  if (!columns.ok()) return Annotate(columns.status(), context);
  bool has_id = false;
  bool has_config = false;
  for (const sql::Row& row : columns->rows) {
    has_id = has_id || row.Text(0) == "id";
    has_config = has_config || row.Text(0) == "config";
  }
  if (!has_id || !has_config) {
    return NotAnImportSource(
        file,
        "a SQLite database without a `models` table with `id` and "
        "`config` columns");
  }
  absl::StatusOr<sql::Result> rows =
      (*db)->Execute("SELECT id, config FROM models ORDER BY id");
  if (!rows.ok()) return Annotate(rows.status(), context);

  ImportPlan plan;
  plan.source_kind = "invokeai-sqlite";
  plan.models_dir = models_dir;
  for (const sql::Row& row : rows->rows) {
    const std::string id = row.Text(0);
    const std::optional<std::string> text = row.OptionalText(1);
    std::vector<std::string> notes;
    EntryResult result = InvokeAiRowConfig(id, text, models_dir,
                                           options.target_models_dir, notes);
    // The name as the row gives it, for messages even when it is invalid.
    std::string name;
    if (const json* config = std::get_if<json>(&result)) {
      name = config->value("name", "");
    } else if (text.has_value()) {
      json raw = json::parse(*text, nullptr, /*allow_exceptions=*/false);
      if (raw.is_object() && raw.contains("name") && raw["name"].is_string()) {
        name = raw["name"].get<std::string>();
      }
    }
    if (auto* rejected = std::get_if<Rejected>(&result)) {
      plan.skipped.push_back(
          {id, name, rejected->code, std::move(rejected->message)});
      continue;
    }
    // Notes matter only for what is imported.
    for (std::string& note : notes) {
      plan.notes.push_back({id, name, std::move(note)});
    }
    plan.configs.push_back(std::get<json>(std::move(result)));
    plan.config_entries.push_back(id);
  }
  return plan;
}

}  // namespace

std::string_view SkipReasonName(SkipReason reason) {
  switch (reason) {
    case SkipReason::kInvalidEntry:
      return "invalid_entry";
    case SkipReason::kFileNotFound:
      return "file_not_found";
    case SkipReason::kUnreadable:
      return "unreadable";
    case SkipReason::kUnknownFamily:
      return "unknown_family";
    case SkipReason::kInvalidField:
      return "invalid_field";
    case SkipReason::kDuplicatePath:
      return "duplicate_path";
    case SkipReason::kAlreadyExists:
      return "already_exists";
    case SkipReason::kRejected:
      return "rejected";
  }
  return "rejected";
}

absl::StatusOr<ImportPlan> PlanImport(const fs::path& file,
                                      const ImportOptions& options) {
  ImportOptions clean_options = options;
  clean_options.target_models_dir = CleanDir(options.target_models_dir);
  const fs::path models_dir = CleanDir(options.models_dir);
  std::error_code error;
  if (!fs::exists(file, error)) {
    return absl::NotFoundError(
        absl::StrCat("import source ", file.string(), " does not exist"));
  }
  if (fs::is_directory(file, error)) {
    return NotAnImportSource(file, "it is a directory");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(
        absl::StrCat("cannot read ", file.string(), "; check its permissions"));
  }
  char magic[sizeof(kSqliteMagic)] = {};
  in.read(magic, sizeof(magic));
  if (in.gcount() == static_cast<std::streamsize>(sizeof(magic)) &&
      std::string_view(magic, sizeof(magic)) ==
          std::string_view(kSqliteMagic, sizeof(kSqliteMagic))) {
    return PlanInvokeAiDatabase(
        file, clean_options,
        models_dir.empty() ? DefaultModelsDir(file, "databases") : models_dir);
  }

  const uintmax_t size = fs::file_size(file, error);
  if (error || size > kMaxLegacyYamlBytes) {
    return NotAnImportSource(file, "too large for a models.yaml");
  }
  in.clear();
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return NotAnImportSource(
        file, absl::StrCat("not valid YAML: ", SafeForMessage(e.what())));
  }
  const YAML::Node metadata = root.IsMap() ? root[kMetadataKey] : YAML::Node();
  const YAML::Node version =
      metadata.IsMap() ? metadata["version"] : YAML::Node();
  if (!version.IsScalar() || version.Scalar() != kLegacyVersion) {
    return NotAnImportSource(
        file, "no __metadata__.version 3.0.0 and no SQLite header");
  }
  return PlanLegacyYaml(
      root, clean_options,
      models_dir.empty() ? DefaultModelsDir(file, "configs") : models_dir);
}

}  // namespace mm::cli
