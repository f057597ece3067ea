#include "services/records/model_registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/paging.h"
#include "common/status.h"
#include "model/config_validation.h"
#include "model/taxonomy.h"

namespace mm::records {
namespace {

using nlohmann::json;

// Fields the service keeps itself; a client may send them back from a Get
// but they are never part of a config.
void StripOutputOnlyFields(json& config) {
  for (const char* field : {"revision", "etag", "created_at", "updated_at"}) {
    config.erase(field);
  }
}

absl::Status CheckKey(const std::string& key) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  return absl::OkStatus();
}

absl::Status CheckFilter(const std::optional<std::string>& value,
                         const char* field, bool (*known)(std::string_view)) {
  if (value && !known(*value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "filter ", field, " '", *value, "' is not a known ", field, " value"));
  }
  return absl::OkStatus();
}

// How many times Update re-reads and retries when another writer got in
// first and the caller did not pin a revision.
constexpr int kUpdateAttempts = 100;

}  // namespace

absl::StatusOr<StoredModel> ModelRegistry::Create(
    json config, const std::string& request_id) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError("a model config must be a JSON object");
  }
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is ", request_id.size(),
                     " bytes; the limit is ", kMaxRequestIdBytes));
  }
  StripOutputOnlyFields(config);
  if (!config.contains("key") || config["key"].is_null() ||
      (config["key"].is_string() && config["key"].get<std::string>().empty())) {
    config["key"] = NewResourceId();
  }
  ASSIGN_OR_RETURN(json valid, model::ValidateConfig(config));
  return store_->Insert(valid, request_id);
}

absl::StatusOr<StoredModel> ModelRegistry::Get(const std::string& key) {
  RETURN_IF_ERROR(CheckKey(key));
  return store_->Get(key);
}

absl::StatusOr<StoredModel> ModelRegistry::Update(const std::string& key,
                                                  const json& changes,
                                                  bool allow_class_change,
                                                  int64_t expected_revision) {
  RETURN_IF_ERROR(CheckKey(key));
  if (!changes.is_object()) {
    return absl::InvalidArgumentError("changes must be a JSON object");
  }
  json clean = changes;
  StripOutputOnlyFields(clean);
  for (int attempt = 0; attempt < kUpdateAttempts; ++attempt) {
    ASSIGN_OR_RETURN(StoredModel current, store_->Get(key));
    if (expected_revision > 0 && current.revision != expected_revision) {
      return absl::AbortedError(
          absl::StrCat("model '", key, "' changed since revision ",
                       expected_revision, " (it is now at revision ",
                       current.revision, "); read it again and retry"));
    }
    ASSIGN_OR_RETURN(
        json updated,
        model::ApplyConfigChanges(current.config, clean, allow_class_change));
    absl::StatusOr<StoredModel> stored =
        store_->Replace(key, updated, current.revision);
    if (absl::IsAborted(stored.status()) && expected_revision == 0) {
      continue;  // someone else wrote in between: apply to the new state
    }
    return stored;
  }
  return absl::AbortedError(absl::StrCat(
      "model '", key, "' is being changed too often to update; retry"));
}

absl::StatusOr<StoredModel> ModelRegistry::Replace(const std::string& key,
                                                   json config,
                                                   int64_t expected_revision) {
  RETURN_IF_ERROR(CheckKey(key));
  if (!config.is_object()) {
    return absl::InvalidArgumentError("a model config must be a JSON object");
  }
  StripOutputOnlyFields(config);
  if (!config.contains("key") || config["key"].is_null() ||
      config["key"] == "") {
    config["key"] = key;
  } else if (config["key"] != key) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key '",
        config["key"].is_string() ? config["key"].get<std::string>()
                                  : config["key"].dump(),
        "' does not match the key being replaced, '", key, "'"));
  }
  ASSIGN_OR_RETURN(json valid, model::ValidateConfig(config));
  return store_->Replace(key, valid, expected_revision);
}

absl::StatusOr<int64_t> ModelRegistry::Delete(const std::string& key,
                                              int64_t expected_revision) {
  RETURN_IF_ERROR(CheckKey(key));
  return store_->Delete(key, expected_revision);
}

absl::StatusOr<ModelPage> ModelRegistry::List(ModelQuery query) {
  RETURN_IF_ERROR(CheckFilter(query.base, "base", &model::IsKnownBase));
  RETURN_IF_ERROR(CheckFilter(query.type, "type", &model::IsKnownType));
  RETURN_IF_ERROR(CheckFilter(query.format, "format", &model::IsKnownFormat));
  ASSIGN_OR_RETURN(query.page_size, EffectivePageSize(query.page_size));
  ASSIGN_OR_RETURN(ModelPage page, store_->List(query));
  std::vector<StoredModel> valid;
  valid.reserve(page.models.size());
  for (StoredModel& model : page.models) {
    absl::StatusOr<json> checked = model::ValidateConfig(model.config);
    if (!checked.ok()) {
      MM_LOG(WARNING) << "skipping stored record '"
                      << model.config.value("key", "?")
                      << "' that no longer validates: "
                      << checked.status().message();
      continue;
    }
    valid.push_back(std::move(model));
  }
  page.models = std::move(valid);
  return page;
}

absl::StatusOr<StoredModel> ModelRegistry::FindByName(const std::string& name,
                                                      const std::string& base,
                                                      const std::string& type) {
  ModelQuery query;
  query.name = name;
  query.base = base;
  query.type = type;
  query.page_size = 2;
  ASSIGN_OR_RETURN(ModelPage page, List(query));
  if (page.models.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no model named '", name, "' with base ", base, " and type ", type));
  }
  if (page.models.size() > 1) {
    std::vector<std::string> keys;
    for (const StoredModel& m : page.models) {
      keys.push_back(m.config.value("key", ""));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "more than one model is named '", name, "' with base ", base,
        " and type ", type, " (keys ", absl::StrJoin(keys, ", "),
        page.next_page_token.empty() ? "" : ", ...", "); use a key instead"));
  }
  return std::move(page.models.front());
}

}  // namespace mm::records
