#include "services/records/yaml_record_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "common/status.h"
#include "common/strings.h"
#include "services/records/store_util.h"
#include "yaml-cpp/yaml.h"

namespace mm::records {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// `__metadata__.version` of InvokeAI 3's models.yaml.
constexpr char kLegacyVersion[] = "3.0.0";
// Tags yaml-cpp gives a quoted scalar and an explicit !!str scalar.
constexpr char kQuotedTag[] = "!";
constexpr char kStrTag[] = "tag:yaml.org,2002:str";

// ---------------------------------------------------------------------------
// JSON <-> YAML

bool IsDigits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

// [-+]?[0-9]+
bool LooksLikeInteger(std::string_view text) {
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    text.remove_prefix(1);
  }
  return IsDigits(text);
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?  (YAML 1.2 core)
bool LooksLikeFloat(std::string_view text) {
  size_t i = 0;
  auto digits = [&]() {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i - start;
  };
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
  size_t mantissa = digits();
  if (i < text.size() && text[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

// A plain (unquoted) scalar under the YAML 1.2 core schema.
json ResolvePlainScalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" ||
      text == "NULL") {
    return nullptr;
  }
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  if (LooksLikeInteger(text)) {
    int64_t signed_value = 0;
    if (absl::SimpleAtoi(text, &signed_value)) return signed_value;
    uint64_t unsigned_value = 0;
    if (text[0] != '-' && absl::SimpleAtoi(text, &unsigned_value)) {
      return unsigned_value;
    }
    return std::strtod(text.c_str(), nullptr);
  }
  if (LooksLikeFloat(text)) return std::strtod(text.c_str(), nullptr);
  std::string lower = AsciiLower(text);
  if (lower == ".inf" || lower == "+.inf") return HUGE_VAL;
  if (lower == "-.inf") return -HUGE_VAL;
  if (lower == ".nan") return std::nan("");
  return text;
}

json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar:
      if (node.Tag() == kQuotedTag || node.Tag() == kStrTag) {
        return node.Scalar();
      }
      return ResolvePlainScalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      json array = json::array();
      for (const YAML::Node& item : node) array.push_back(YamlToJson(item));
      return array;
    }
    case YAML::NodeType::Map: {
      json object = json::object();
      for (const auto& entry : node) {
        object[entry.first.Scalar()] = YamlToJson(entry.second);
      }
      return object;
    }
  }
  return nullptr;
}

// The shortest "%.Ng" that reads back as the same double, always with a
// '.' or an exponent so it reads back as a float, not an integer.
std::string FormatDouble(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  std::string text;
  for (int precision = 15; precision <= 17; ++precision) {
    text = absl::StrFormat("%.*g", precision, value);
    if (std::strtod(text.c_str(), nullptr) == value) break;
  }
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

void EmitJson(YAML::Emitter& out, const json& value) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      out << YAML::Null;
      break;
    case json::value_t::boolean:
      out << value.get<bool>();
      break;
    case json::value_t::number_integer:
      out << value.get<int64_t>();
      break;
    case json::value_t::number_unsigned:
      out << value.get<uint64_t>();
      break;
    case json::value_t::number_float:
      out << FormatDouble(value.get<double>());
      break;
    case json::value_t::string:
      out << YAML::DoubleQuoted << value.get<std::string>();
      break;
    case json::value_t::binary:
      out << YAML::DoubleQuoted << json(value).dump();
      break;
    case json::value_t::array:
      if (value.empty()) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const json& item : value) EmitJson(out, item);
      out << YAML::EndSeq;
      break;
    case json::value_t::object:
      if (value.empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (const auto& [key, item] : value.items()) {
        out << YAML::Key << YAML::DoubleQuoted << key << YAML::Value;
        EmitJson(out, item);
      }
      out << YAML::EndMap;
      break;
  }
}

// ---------------------------------------------------------------------------
// Files

absl::Status ErrnoError(int error, std::string_view what,
                        const fs::path& file) {
  std::string message = absl::StrCat(
      "model records file ", file.string(), ": ", std::string(what), ": ",
      std::strerror(error),
      "; check that its directory exists and is writable and that the disk "
      "has free space");
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::UnavailableError(message);
}

fs::path DirectoryOf(const fs::path& file) {
  fs::path dir = file.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// Replaces `file` by `contents` so that a crash leaves the old or the new
// file. New files get mode 0644; an existing file keeps its mode.
absl::Status WriteFileAtomically(const fs::path& file,
                                 std::string_view contents) {
  const fs::path dir = DirectoryOf(file);
  mode_t mode = 0644;
  struct stat existing;
  if (::stat(file.c_str(), &existing) == 0) mode = existing.st_mode & 07777;

  std::string temp =
      (dir / absl::StrCat(".", file.filename().string(), ".tmp-XXXXXX"))
          .string();
  int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError(
        errno, absl::StrCat("creating a temporary file in ", dir.string()),
        file);
  }
  auto fail = [&](std::string_view what) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return ErrnoError(error, absl::StrCat(std::string(what), " ", temp), file);
  };
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n =
        ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("writing");
    }
    written += static_cast<size_t>(n);
  }
  if (::fchmod(fd, mode) != 0) return fail("setting the mode of");
  if (::fsync(fd) != 0) return fail("syncing");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail("closing");
  if (::rename(temp.c_str(), file.c_str()) != 0) {
    return fail(absl::StrCat("replacing ", file.string(), " by"));
  }
  // The rename is visible now; a failing directory sync only weakens
  // durability across a power cut, so it is reported but not returned
  // (returning it would leave memory behind the file).
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0 || ::fsync(dir_fd) != 0) {
    MM_LOG(WARNING) << "model records file " << file.string()
                    << ": syncing directory " << dir.string() << ": "
                    << std::strerror(errno);
  }
  if (dir_fd >= 0) ::close(dir_fd);
  return absl::OkStatus();
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string PathOf(const json& config) {
  auto it = config.find("path");
  return it != config.end() && it->is_string() ? it->get<std::string>() : "";
}

bool HasPath(const json& config) {
  auto it = config.find("path");
  return it != config.end() && it->is_string();
}

using ModelMap = std::map<std::string, StoredModel>;

// ---------------------------------------------------------------------------
// Reading a records file

absl::Status NotARecordsFile(const fs::path& file, std::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(
      file.string(), " is not a model records file: ", std::string(why),
      "; a records file starts with __metadata__: {version: \"",
      kYamlStoreVersion, "\", kind: \"", kYamlStoreKind,
      "\"}. Point the store at a new .yaml path to start an empty one"));
}

absl::Status Damaged(const fs::path& file, std::string_view entry,
                     std::string_view why) {
  return absl::DataLossError(absl::StrCat(
      "model records file ", file.string(), ": entry \"", std::string(entry),
      "\" ", std::string(why),
      "; fix the entry by hand or restore the file from a backup"));
}

std::string ScalarOr(const YAML::Node& node, const char* field) {
  const YAML::Node value = node[field];
  return value.IsScalar() ? value.Scalar() : "";
}

absl::StatusOr<int64_t> IntField(const fs::path& file, std::string_view entry,
                                 const YAML::Node& node, const char* field) {
  const json value = YamlToJson(node[field]);
  if (!value.is_number_integer() || value.get<int64_t>() < 0) {
    return Damaged(file, entry,
                   absl::StrCat("has field '", field, "' = ", value.dump(),
                                "; expected an integer >= 0"));
  }
  return value.get<int64_t>();
}

struct LoadedFile {
  ModelMap models;
  int64_t revision = 0;
};

absl::StatusOr<LoadedFile> ParseRecordsFile(const fs::path& file,
                                            const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::FailedPreconditionError(absl::StrCat(
        file.string(), " is not valid YAML (", SafeForMessage(e.what()),
        "); fix the file or restore it from a backup"));
  }
  if (!root.IsMap()) {
    return NotARecordsFile(file, "its top level is not a mapping");
  }
  const YAML::Node metadata = root[kMetadataKey];
  if (!metadata.IsMap()) {
    return NotARecordsFile(
        file,
        "it has no __metadata__ marker (to bring in an InvokeAI models.yaml "
        "or database, run `mm models import FILE`)");
  }
  const std::string version = ScalarOr(metadata, "version");
  if (version == kLegacyVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        file.string(),
        " is a legacy v3 models.yaml (InvokeAI 3.x, __metadata__.version "
        "3.0.0), which the records store cannot open; import its models "
        "with `mm models import ",
        file.string(), "` and point the store at a new file"));
  }
  const std::string kind = ScalarOr(metadata, "kind");
  if (kind != kYamlStoreKind) {
    return NotARecordsFile(
        file, absl::StrCat("its __metadata__.kind is \"", kind, "\", not \"",
                           kYamlStoreKind, "\""));
  }
  if (version != kYamlStoreVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        file.string(), " is a model records file of version \"", version,
        "\"; this program reads version \"", kYamlStoreVersion,
        "\" only. Use the program that wrote it, or import the models with "
        "`mm models import`"));
  }

  LoadedFile loaded;
  ASSIGN_OR_RETURN(loaded.revision,
                   IntField(file, kMetadataKey, metadata, "revision"));
  std::map<std::string, std::string> paths;
  for (const auto& entry : root) {
    const std::string key = entry.first.Scalar();
    if (key == kMetadataKey) continue;
    const YAML::Node& node = entry.second;
    if (loaded.models.contains(key)) {
      return Damaged(file, key, "appears twice");
    }
    if (!node.IsMap() || !node["config"].IsMap()) {
      return Damaged(file, key,
                     "is not a mapping with a 'config' mapping, 'revision', "
                     "'created_at' and 'updated_at'");
    }
    StoredModel model;
    model.config = YamlToJson(node["config"]);
    auto key_it = model.config.find("key");
    if (key_it == model.config.end()) {
      model.config["key"] = key;
    } else if (!key_it->is_string() || key_it->get<std::string>() != key) {
      return Damaged(file, key,
                     absl::StrCat("has config key ", key_it->dump(),
                                  ", which differs from the entry's key"));
    }
    ASSIGN_OR_RETURN(model.revision, IntField(file, key, node, "revision"));
    ASSIGN_OR_RETURN(model.created_at_us,
                     IntField(file, key, node, "created_at"));
    ASSIGN_OR_RETURN(model.updated_at_us,
                     IntField(file, key, node, "updated_at"));
    if (HasPath(model.config)) {
      auto [it, inserted] = paths.emplace(PathOf(model.config), key);
      if (!inserted) {
        return Damaged(file, key,
                       absl::StrCat("has path \"", PathOf(model.config),
                                    "\", which entry \"", it->second,
                                    "\" has too; paths must be unique"));
      }
    }
    // A hand edit may have left the store revision behind a record's.
    loaded.revision = std::max(loaded.revision, model.revision);
    loaded.models.emplace(key, std::move(model));
  }
  return loaded;
}

absl::StatusOr<std::string> SerializeRecords(const ModelMap& models,
                                             int64_t revision) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << YAML::DoubleQuoted << kMetadataKey << YAML::Value;
  out << YAML::BeginMap;
  out << YAML::Key << YAML::DoubleQuoted << "version" << YAML::Value
      << YAML::DoubleQuoted << kYamlStoreVersion;
  out << YAML::Key << YAML::DoubleQuoted << "kind" << YAML::Value
      << YAML::DoubleQuoted << kYamlStoreKind;
  out << YAML::Key << YAML::DoubleQuoted << "revision" << YAML::Value
      << revision;
  out << YAML::EndMap;
  for (const auto& [key, model] : models) {
    out << YAML::Key << YAML::DoubleQuoted << key << YAML::Value;
    out << YAML::BeginMap;
    out << YAML::Key << YAML::DoubleQuoted << "config" << YAML::Value;
    EmitJson(out, model.config);
    out << YAML::Key << YAML::DoubleQuoted << "revision" << YAML::Value
        << model.revision;
    out << YAML::Key << YAML::DoubleQuoted << "created_at" << YAML::Value
        << model.created_at_us;
    out << YAML::Key << YAML::DoubleQuoted << "updated_at" << YAML::Value
        << model.updated_at_us;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  if (!out.good()) {
    return absl::InternalError(absl::StrCat(
        "encoding the model records as YAML failed: ", out.GetLastError()));
  }
  std::string text = out.c_str();
  text += '\n';
  return text;
}

// ---------------------------------------------------------------------------
// The store

absl::Status KeyNotFound(const std::string& key) {
  return absl::NotFoundError(absl::StrCat(
      "unknown model key '", key, "'; list the models to find its key"));
}

absl::Status StaleRevision(const std::string& key, int64_t expected,
                           int64_t actual) {
  return absl::AbortedError(absl::StrCat(
      "model '", key, "' changed since revision ", expected,
      " (it is now at revision ", actual, "); read it again and retry"));
}

absl::StatusOr<std::string> ConfigKey(const json& config) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config must be a JSON object, got ", config.type_name()));
  }
  auto it = config.find("key");
  if (it == config.end() || !it->is_string() ||
      it->get<std::string>().empty()) {
    return absl::InvalidArgumentError(
        "config field 'key' must be a non-empty string");
  }
  return it->get<std::string>();
}

class YamlRecordStore : public RecordStore {
 public:
  YamlRecordStore(fs::path file, LoadedFile loaded)
      : file_(std::move(file)),
        models_(std::move(loaded.models)),
        revision_(loaded.revision),
        log_floor_(loaded.revision) {
    for (const auto& [key, model] : models_) {
      if (HasPath(model.config)) paths_[PathOf(model.config)] = key;
    }
    notifier_.Notify(revision_);
  }

  std::string backend() const override { return "yaml"; }
  std::string schema_version() const override { return kYamlStoreVersion; }

  absl::StatusOr<StoredModel> Insert(const json& config,
                                     const std::string& request_id) override {
    ASSIGN_OR_RETURN(std::string key, ConfigKey(config));
    MutexLock lock(&mu_);
    if (!request_id.empty()) {
      auto it = request_ids_.find(request_id);
      if (it != request_ids_.end()) {
        auto current =
            models_.find(it->second.config.at("key").get<std::string>());
        return current != models_.end() ? current->second : it->second;
      }
    }
    if (models_.contains(key)) {
      return absl::AlreadyExistsError(
          absl::StrCat("a model with key '", key, "' already exists"));
    }
    if (HasPath(config)) RETURN_IF_ERROR(CheckPathFree(config, key));
    const int64_t now = NowMicros();
    StoredModel model{config, revision_ + 1, now, now};
    ModelMap next = models_;
    next[key] = model;
    RETURN_IF_ERROR(Commit(std::move(next), ChangeType::kAdded, model));
    if (HasPath(config)) paths_[PathOf(config)] = key;
    if (!request_id.empty()) {
      request_ids_.emplace(request_id, model);
      request_order_.push_back(request_id);
      if (request_order_.size() > kYamlRememberedRequestIds) {
        request_ids_.erase(request_order_.front());
        request_order_.pop_front();
      }
    }
    return model;
  }

  absl::StatusOr<StoredModel> Get(const std::string& key) override {
    MutexLock lock(&mu_);
    auto it = models_.find(key);
    if (it == models_.end()) return KeyNotFound(key);
    return it->second;
  }

  absl::StatusOr<StoredModel> Replace(const std::string& key,
                                      const json& config,
                                      int64_t expected_revision) override {
    if (!config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config must be a JSON object, got ", config.type_name()));
    }
    json stored = config;
    auto key_it = stored.find("key");
    if (key_it == stored.end()) {
      stored["key"] = key;
    } else if (!key_it->is_string() || key_it->get<std::string>() != key) {
      return absl::InvalidArgumentError(
          absl::StrCat("config field 'key' is ", key_it->dump(),
                       " but the model being replaced is \"", key,
                       "\"; a replace cannot change the key"));
    }
    MutexLock lock(&mu_);
    auto it = models_.find(key);
    if (it == models_.end()) return KeyNotFound(key);
    if (expected_revision > 0 && expected_revision != it->second.revision) {
      return StaleRevision(key, expected_revision, it->second.revision);
    }
    if (HasPath(stored)) RETURN_IF_ERROR(CheckPathFree(stored, key));
    const json old_config = it->second.config;
    StoredModel model{std::move(stored), revision_ + 1,
                      it->second.created_at_us, NowMicros()};
    ModelMap next = models_;
    next[key] = model;
    RETURN_IF_ERROR(Commit(std::move(next), ChangeType::kModified, model));
    if (HasPath(old_config)) paths_.erase(PathOf(old_config));
    if (HasPath(model.config)) paths_[PathOf(model.config)] = key;
    return model;
  }

  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 int64_t expected_revision) override {
    MutexLock lock(&mu_);
    auto it = models_.find(key);
    if (it == models_.end()) return KeyNotFound(key);
    if (expected_revision > 0 && expected_revision != it->second.revision) {
      return StaleRevision(key, expected_revision, it->second.revision);
    }
    StoredModel last = it->second;
    ModelMap next = models_;
    next.erase(key);
    const int64_t revision = revision_ + 1;
    RETURN_IF_ERROR(Commit(std::move(next), ChangeType::kDeleted, last));
    if (HasPath(last.config)) paths_.erase(PathOf(last.config));
    return revision;
  }

  absl::StatusOr<ModelPage> List(const ModelQuery& query) override {
    ASSIGN_OR_RETURN(json after, DecodePageToken(query));
    const size_t page_size = static_cast<size_t>(std::max(1, query.page_size));
    std::vector<std::pair<json, const StoredModel*>> rows;
    ModelPage page;
    MutexLock lock(&mu_);
    page.revision = revision_;
    for (const auto& [key, model] : models_) {
      if (!MatchesQuery(model, query)) continue;
      json values = SortValues(model, query.order);
      if (!after.is_null()) {
        const bool past = query.descending ? values < after : after < values;
        if (!past) continue;
      }
      rows.emplace_back(std::move(values), &model);
    }
    auto by_values = [&](const auto& a, const auto& b) {
      return query.descending ? b.first < a.first : a.first < b.first;
    };
    const bool more = rows.size() > page_size;
    const size_t take = std::min(rows.size(), page_size);
    std::partial_sort(rows.begin(), rows.begin() + take, rows.end(), by_values);
    for (size_t i = 0; i < take; ++i) page.models.push_back(*rows[i].second);
    if (more)
      page.next_page_token = EncodePageToken(query, rows[take - 1].first);
    return page;
  }

  absl::StatusOr<std::vector<ModelChange>> ChangesSince(int64_t after,
                                                        int limit) override {
    if (limit <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("limit must be at least 1, got ", limit));
    }
    MutexLock lock(&mu_);
    std::vector<ModelChange> changes;
    if (after >= revision_) return changes;
    if (after < log_floor_) {
      return absl::OutOfRangeError(absl::StrCat(
          "changes after revision ", after,
          " are no longer kept (this store's change log starts after "
          "revision ",
          log_floor_, "); list the models again and watch from revision ",
          revision_));
    }
    auto it = std::lower_bound(
        log_.begin(), log_.end(), after + 1,
        [](const ModelChange& c, int64_t r) { return c.revision < r; });
    for (; it != log_.end() && changes.size() < static_cast<size_t>(limit);
         ++it) {
      changes.push_back(*it);
    }
    return changes;
  }

  absl::StatusOr<int64_t> CurrentRevision() override {
    MutexLock lock(&mu_);
    return revision_;
  }

  void WaitForChange(int64_t after, absl::Time deadline) override {
    notifier_.Wait(after, deadline);
  }

  void Interrupt() override { notifier_.Interrupt(); }

  absl::Status Ping() override {
    const fs::path dir = DirectoryOf(file_);
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
      return ErrnoError(
          errno, absl::StrCat("directory ", dir.string(), " is not writable"),
          file_);
    }
    if (::access(file_.c_str(), R_OK) != 0) {
      return ErrnoError(errno, "the file cannot be read", file_);
    }
    return absl::OkStatus();
  }

 private:
  // ALREADY_EXISTS when another model than `key` has the config's path.
  absl::Status CheckPathFree(const json& config, const std::string& key)
      ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    const std::string path = PathOf(config);
    auto it = paths_.find(path);
    if (it != paths_.end() && it->second != key) {
      return absl::AlreadyExistsError(
          absl::StrCat("a model with path '", path, "' already exists (model '",
                       it->second, "'); each model file is registered once"));
    }
    return absl::OkStatus();
  }

  // Writes `next` as the new state at revision_ + 1; on success makes it
  // current, logs `changed` and wakes watchers. On failure nothing changes.
  absl::Status Commit(ModelMap next, ChangeType type,
                      const StoredModel& changed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int64_t revision = revision_ + 1;
    ASSIGN_OR_RETURN(std::string text, SerializeRecords(next, revision));
    RETURN_IF_ERROR(WriteFileAtomically(file_, text));
    models_ = std::move(next);
    revision_ = revision;
    ModelChange change;
    change.type = type;
    change.revision = revision;
    change.model = changed;
    log_.push_back(std::move(change));
    while (static_cast<int64_t>(log_.size()) > kChangeLogRetention) {
      log_floor_ = log_.front().revision;
      log_.pop_front();
    }
    notifier_.Notify(revision);
    return absl::OkStatus();
  }

  const fs::path file_;
  ChangeNotifier notifier_;
  Mutex mu_;
  ModelMap models_ ABSL_GUARDED_BY(mu_);
  // path -> key, for the UNIQUE(path) rule.
  std::map<std::string, std::string> paths_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  // Every change with a revision above log_floor_ is in log_.
  int64_t log_floor_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<ModelChange> log_ ABSL_GUARDED_BY(mu_);
  // request_id -> the record as first inserted; request_order_ evicts the
  // oldest beyond kYamlRememberedRequestIds.
  std::map<std::string, StoredModel> request_ids_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> request_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<RecordStore>> OpenYamlRecordStore(
    const fs::path& file) {
  std::error_code error;
  const bool exists = fs::exists(file, error);
  if (error) {
    return ErrnoError(error.value(), "checking whether it exists", file);
  }
  LoadedFile loaded;
  bool write_marker = !exists;
  if (!exists) {
    const fs::path dir = DirectoryOf(file);
    if (!fs::is_directory(dir, error)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot create model records file ", file.string(), ": directory ",
          dir.string(), " does not exist; create it first"));
    }
  } else {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in || fs::is_directory(file, error)) {
      return absl::UnavailableError(
          absl::StrCat("cannot read model records file ", file.string(),
                       "; check that it is a readable file"));
    }
    // An empty file (e.g. made with `touch`) is an empty store.
    if (text.str().find_first_not_of(" \t\r\n") != std::string::npos) {
      ASSIGN_OR_RETURN(loaded, ParseRecordsFile(file, text.str()));
    } else {
      write_marker = true;
    }
  }
  if (write_marker) {
    // Write the marker now, so the file is recognized from the start.
    ASSIGN_OR_RETURN(std::string text,
                     SerializeRecords(loaded.models, loaded.revision));
    RETURN_IF_ERROR(WriteFileAtomically(file, text));
  }
  return std::unique_ptr<RecordStore>(
      new YamlRecordStore(file, std::move(loaded)));
}

}  // namespace mm::records
