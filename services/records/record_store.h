// RecordStore: where model records live. One interface, three backends
// (SQLite, PostgreSQL, a YAML file), all held to one conformance suite
// (tests/records/record_store_conformance_test.cc).
//
// A store keeps each record's config as the reference's JSON dict (already
// validated by the caller: stores never validate), plus a store-wide
// revision that grows by one on every change. Every change is also kept in
// a bounded change log, so watchers can resume from a revision.
//
//   ASSIGN_OR_RETURN(auto store, OpenRecordStore("sqlite:/var/mm/r.db"));
//   ASSIGN_OR_RETURN(StoredModel m, store->Insert(config, /*request_id=*/""));
//   ASSIGN_OR_RETURN(ModelPage page, store->List({.base = "sdxl"}));
//
// Thread-safety: every method may be called from any thread.
#ifndef MM_SERVICES_RECORDS_RECORD_STORE_H_
#define MM_SERVICES_RECORDS_RECORD_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics/registry.h"
#include "nlohmann/json.hpp"

namespace mm::records {

// A record as stored.
struct StoredModel {
  // The config dict (spec §2 field names); config["key"] is its key.
  nlohmann::json config;
  // Revision of the last change to this record.
  int64_t revision = 0;
  // Microseconds since the Unix epoch, kept by the store.
  int64_t created_at_us = 0;
  int64_t updated_at_us = 0;
};

enum class ChangeType { kAdded, kModified, kDeleted };

struct ModelChange {
  ChangeType type = ChangeType::kAdded;
  int64_t revision = 0;
  // The record after the change; for kDeleted, its last state.
  StoredModel model;
};

// Orderings of spec §3. Ties are broken by key; names compare
// case-insensitively (ASCII).
enum class ModelOrder {
  kDefault,  // type, base, name, format
  kName,
  kBase,
  kType,
  kFormat,
  kSize,
  kCreatedAt,
  kUpdatedAt,
  kPath,
};

struct ModelQuery {
  // Each set filter must match exactly; all of them must hold.
  std::optional<std::string> name;
  // Matches `base` or any entry of `compatible_bases`.
  std::optional<std::string> base;
  std::optional<std::string> type;
  std::optional<std::string> format;
  std::optional<std::string> path;
  std::optional<std::string> hash;
  // Records carrying every one of these tags.
  std::vector<std::string> tags;
  ModelOrder order = ModelOrder::kDefault;
  bool descending = false;
  // Most records to return (>= 1; callers clamp).
  int page_size = 100;
  // next_page_token of the previous page for the same filters and order.
  std::string page_token;
};

struct ModelPage {
  std::vector<StoredModel> models;
  // Empty on the last page.
  std::string next_page_token;
  // The store revision the page was read at (or later).
  int64_t revision = 0;
};

class RecordStore {
 public:
  virtual ~RecordStore() = default;

  // "sqlite", "postgresql" or "yaml".
  virtual std::string backend() const = 0;
  // The store's schema version, e.g. "1".
  virtual std::string schema_version() const = 0;

  // Adds a record whose config has a "key". ALREADY_EXISTS when the key or
  // the path is taken (the message names which). With a non-empty
  // request_id already used by an earlier Insert, returns that record
  // instead of inserting (idempotent create).
  virtual absl::StatusOr<StoredModel> Insert(const nlohmann::json& config,
                                             const std::string& request_id) = 0;

  // NOT_FOUND for an unknown key.
  virtual absl::StatusOr<StoredModel> Get(const std::string& key) = 0;

  // Replaces the config of `key`. When expected_revision > 0 and differs
  // from the stored revision: ABORTED. NOT_FOUND, ALREADY_EXISTS (path).
  virtual absl::StatusOr<StoredModel> Replace(const std::string& key,
                                              const nlohmann::json& config,
                                              int64_t expected_revision) = 0;

  // Removes `key`; returns the revision of the deletion. ABORTED on a stale
  // expected_revision (> 0), NOT_FOUND.
  virtual absl::StatusOr<int64_t> Delete(const std::string& key,
                                         int64_t expected_revision) = 0;

  // Records matching `query`, one page. INVALID_ARGUMENT for a page token
  // that is malformed or belongs to other filters or another order.
  virtual absl::StatusOr<ModelPage> List(const ModelQuery& query) = 0;

  // Changes with revision > `after`, oldest first, at most `limit`.
  // OUT_OF_RANGE when changes after `after` were already dropped from the
  // bounded log (the caller must list again).
  virtual absl::StatusOr<std::vector<ModelChange>> ChangesSince(int64_t after,
                                                                int limit) = 0;

  // The latest revision.
  virtual absl::StatusOr<int64_t> CurrentRevision() = 0;

  // Blocks until the store's revision may exceed `after` (a change was
  // committed here or, for PostgreSQL, by any replica), `deadline` passes,
  // or Interrupt() is called. Spurious wake-ups are allowed: callers re-read
  // with ChangesSince.
  virtual void WaitForChange(int64_t after, absl::Time deadline) = 0;

  // Wakes every WaitForChange (used at shutdown).
  virtual void Interrupt() = 0;

  // OK when the backing database or file is usable.
  virtual absl::Status Ping() = 0;
};

// Opens the store a URL names: "sqlite:PATH" or a bare PATH ending in ".db";
// "postgresql://..." or "postgres://..."; a PATH ending in ".yaml" or
// ".yml" (the YAML file store). Applies migrations. INVALID_ARGUMENT for
// an unknown URL, FAILED_PRECONDITION for a file of the wrong kind,
// UNAVAILABLE when the database cannot be reached. `metrics`, when given,
// counts a database's errors and reconnects (sql::Options::metrics); it
// must outlive the store.
absl::StatusOr<std::unique_ptr<RecordStore>> OpenRecordStore(
    const std::string& url, metrics::Registry* metrics = nullptr);

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_RECORD_STORE_H_
