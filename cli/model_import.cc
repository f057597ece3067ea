#include "cli/model_import.h"

#include <stdlib.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
      "); pass InvokeAI 3's configs/models.yaml or InvokeAI 4's "
      "databases/invokeai.db"));
}

// 32 random lower-case hex digits, the spec's record key.
std::string NewKey() {
  std::random_device random;
  std::string key;
  for (int i = 0; i < 4; ++i) {
    key += absl::StrFormat("%08x", static_cast<uint32_t>(random()));
  }
  return key;
}

// Common fields plus those of the config's family.
bool FamilyAllows(const model::FamilySpec* family, std::string_view field) {
  for (const model::FieldSpec& spec : model::CommonFields()) {
    if (spec.name == field) return true;
  }
  return family != nullptr && family->FindField(field) != nullptr;
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

// `path` lexically below `dir` (relative, without ".."), or empty.
fs::path RelativeInside(const fs::path& path, const fs::path& dir) {
  if (dir.empty()) return {};
  fs::path relative =
      path.lexically_normal().lexically_relative(dir.lexically_normal());
  if (relative.empty() || *relative.begin() == "..") return {};
  return relative;
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

// One legacy entry as a validated config, or why it cannot be.
absl::StatusOr<json> LegacyEntryConfig(const std::string& entry_key,
                                       const YAML::Node& entry,
                                       const fs::path& models_dir,
                                       const ImportOptions& options) {
  if (!entry.IsMap()) {
    return absl::InvalidArgumentError("the entry is not a mapping");
  }
  const size_t first = entry_key.find('/');
  const size_t second =
      first == std::string::npos ? first : entry_key.find('/', first + 1);
  if (second == std::string::npos || first == 0 || second == first + 1 ||
      second + 1 == entry_key.size()) {
    return absl::InvalidArgumentError(
        "the entry key is not of the form <base>/<type>/<name>");
  }
  const std::string base = entry_key.substr(0, first);
  const std::string type = entry_key.substr(first + 1, second - first - 1);
  const std::string name = entry_key.substr(second + 1);

  ASSIGN_OR_RETURN(std::string path_text, TextField(entry, "path"));
  if (path_text.empty()) {
    return absl::InvalidArgumentError("the entry has no 'path'");
  }
  ASSIGN_OR_RETURN(std::string description, TextField(entry, "description"));
  ASSIGN_OR_RETURN(std::string format, TextField(entry, "format"));
  ASSIGN_OR_RETURN(std::string config_path, TextField(entry, "config"));
  ASSIGN_OR_RETURN(std::string variant, TextField(entry, "variant"));

  const fs::path written(path_text);
  const fs::path on_disk =
      written.is_absolute() ? written : models_dir / written;
  std::error_code error;
  if (!fs::exists(on_disk, error)) {
    return absl::NotFoundError(
        absl::StrCat("file not found: ", on_disk.string()));
  }
  const bool is_folder = fs::is_directory(on_disk, error);
  if (format.empty()) format = InferLegacyFormat(type, is_folder);

  // Spec §2: relative to models_dir when inside it, else absolute.
  std::string record_path = written.lexically_normal().string();
  if (written.is_absolute()) {
    fs::path inside = RelativeInside(written, models_dir);
    record_path =
        inside.empty() ? on_disk.lexically_normal().string() : inside.string();
  }

  json config = {{"key", NewKey()},
                 {"name", name},
                 {"base", base},
                 {"type", type},
                 {"format", format},
                 {"path", record_path},
                 {"source", on_disk.lexically_normal().string()},
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

  ASSIGN_OR_RETURN(uint64_t size, SizeOnDisk(on_disk));
  config["file_size"] = size;
  model::HashOptions hash_options;
  if (!options.hash_files) {
    hash_options.algorithm = model::HashAlgorithm::kRandom;
  }
  absl::StatusOr<std::string> hash = model::HashPath(on_disk, hash_options);
  if (!hash.ok()) {
    return Annotate(hash.status(),
                    absl::StrCat("cannot hash ", on_disk.string()));
  }
  config["hash"] = *hash;
  return model::ValidateConfig(config);
}

absl::StatusOr<ImportPlan> PlanLegacyYaml(const fs::path& file,
                                          const YAML::Node& root,
                                          const ImportOptions& options) {
  ImportPlan plan;
  plan.source_kind = "legacy-yaml";
  const fs::path models_dir = options.models_dir.empty()
                                  ? fs::absolute(file).parent_path()
                                  : fs::absolute(options.models_dir);
  // path -> entry, so two entries for one model do not both go in.
  std::map<std::string, std::string> paths;
  for (const auto& item : root) {
    const std::string entry_key = item.first.Scalar();
    if (entry_key == kMetadataKey) continue;
    absl::StatusOr<json> config =
        LegacyEntryConfig(entry_key, item.second, models_dir, options);
    if (!config.ok()) {
      plan.skipped.push_back(
          {entry_key, std::string(config.status().message())});
      continue;
    }
    const std::string path = (*config)["path"].get<std::string>();
    auto [it, inserted] = paths.emplace(path, entry_key);
    if (!inserted) {
      plan.skipped.push_back(
          {entry_key,
           absl::StrCat("path ", path, " is already imported by entry ",
                        it->second)});
      continue;
    }
    plan.configs.push_back(*std::move(config));
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

// One InvokeAI row as a validated config, or why it cannot be.
absl::StatusOr<json> InvokeAiRowConfig(const std::string& id,
                                       const std::optional<std::string>& text) {
  if (id.empty()) return absl::InvalidArgumentError("the row has no id");
  if (!text.has_value() || text->empty()) {
    return absl::InvalidArgumentError("the row's config is empty");
  }
  json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) {
    return absl::InvalidArgumentError("the row's config is not valid JSON");
  }
  if (!config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the row's config is a JSON ", config.type_name(), ", not an object"));
  }
  config["key"] = id;
  // InvokeAI's conversion bookkeeping; not part of a record (spec §2).
  config.erase("converted_at");
  // InvokeAI writes every field of its class, unset ones as null; drop the
  // null ones our family of the record does not have, as they say nothing.
  const model::FamilySpec* family = model::FindFamily(model::ConfigTag(config));
  for (auto it = config.begin(); it != config.end();) {
    if (it->is_null() && !FamilyAllows(family, it.key())) {
      it = config.erase(it);
    } else {
      ++it;
    }
  }
  return model::ValidateConfig(config);
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

absl::StatusOr<ImportPlan> PlanInvokeAiDatabase(const fs::path& file) {
  ASSIGN_OR_RETURN(ScratchDir scratch, ScratchDir::Create());
  const fs::path copy = scratch.path() / "invokeai.db";
  RETURN_IF_ERROR(CopySqliteFiles(file, copy));
  const std::string context =
      absl::StrCat("reading InvokeAI database ", file.string());
  sql::Options sql_options;
  sql_options.pool_size = 1;
  absl::StatusOr<std::unique_ptr<sql::Database>> db =
      sql::Database::Open(absl::StrCat("sqlite:", copy.string()), sql_options);
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
  for (const sql::Row& row : rows->rows) {
    const std::string id = row.Text(0);
    absl::StatusOr<json> config = InvokeAiRowConfig(id, row.OptionalText(1));
    if (config.ok()) {
      plan.configs.push_back(*std::move(config));
    } else {
      plan.skipped.push_back({id, std::string(config.status().message())});
    }
  }
  return plan;
}

}  // namespace

absl::StatusOr<ImportPlan> PlanImport(const fs::path& file,
                                      const ImportOptions& options) {
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
    return PlanInvokeAiDatabase(file);
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
  return PlanLegacyYaml(file, root, options);
}

}  // namespace mm::cli
