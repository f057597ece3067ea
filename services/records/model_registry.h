// ModelRegistry: the records service's logic over a RecordStore, free of
// gRPC: validates every config against the taxonomy registry, generates
// keys, applies sparse updates with optimistic concurrency, and validates
// filters. The rpc layer (records_service.h) only converts messages.
//
//   ModelRegistry registry(store.get());
//   ASSIGN_OR_RETURN(StoredModel m, registry.Create(config, request_id));
//   ASSIGN_OR_RETURN(m, registry.Update(m.config["key"], {{"name", "x"}},
//                                       false, m.revision));
//
// Thread-safe (the store is).
#ifndef MM_SERVICES_RECORDS_MODEL_REGISTRY_H_
#define MM_SERVICES_RECORDS_MODEL_REGISTRY_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "services/records/record_store.h"

namespace mm::records {

// Longest request_id accepted for idempotent creates.
inline constexpr size_t kMaxRequestIdBytes = 128;

class ModelRegistry {
 public:
  // `store` must outlive the registry.
  explicit ModelRegistry(RecordStore* store) : store_(store) {}

  // Validates `config` (generating a key when it has none) and adds it.
  absl::StatusOr<StoredModel> Create(nlohmann::json config,
                                     const std::string& request_id);
  absl::StatusOr<StoredModel> Get(const std::string& key);
  // Applies sparse `changes` (a null value removes a field). With
  // expected_revision 0 the update retries on concurrent writers, so no
  // update is lost; with > 0 a concurrent change gives ABORTED.
  absl::StatusOr<StoredModel> Update(const std::string& key,
                                     const nlohmann::json& changes,
                                     bool allow_class_change,
                                     int64_t expected_revision);
  // Replaces the whole config; config["key"], when present, must be `key`.
  absl::StatusOr<StoredModel> Replace(const std::string& key,
                                      nlohmann::json config,
                                      int64_t expected_revision);
  absl::StatusOr<int64_t> Delete(const std::string& key,
                                 int64_t expected_revision);
  // Validates the filters, applies the paging policy (common/paging.h), and
  // skips (with a warning
  // in the log) stored records that no longer validate.
  absl::StatusOr<ModelPage> List(ModelQuery query);
  // The one model with this name, base and type: NOT_FOUND for none,
  // FAILED_PRECONDITION naming the keys for several.
  absl::StatusOr<StoredModel> FindByName(const std::string& name,
                                         const std::string& base,
                                         const std::string& type);

  RecordStore* store() { return store_; }

 private:
  RecordStore* store_;
};

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_MODEL_REGISTRY_H_
