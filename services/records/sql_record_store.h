// The RecordStore on the SQL layer: SQLite (the embedded default) and
// PostgreSQL (several mm-records replicas on one database).
//
// Table shape of spec §3: the whole config as JSON (jsonb on PostgreSQL),
// generated columns for the searched fields, UNIQUE(path), indexes on base,
// type, name and hash (and a GIN index on tags on PostgreSQL). Every change
// takes the next revision from a one-row counter inside its transaction;
// on PostgreSQL that row lock serializes writers across replicas, so
// revisions commit in order and a watcher never skips one. Watchers on any
// replica learn of commits through LISTEN/NOTIFY on channel
// "mm_records_changes".
#ifndef MM_SERVICES_RECORDS_SQL_RECORD_STORE_H_
#define MM_SERVICES_RECORDS_SQL_RECORD_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/records/record_store.h"

namespace mm::records {

// `url` is a sql::Database URL (sqlite:..., *.db, postgresql://...).
// `metrics`: sql::Options::metrics.
absl::StatusOr<std::unique_ptr<RecordStore>> OpenSqlRecordStore(
    const std::string& url, metrics::Registry* metrics = nullptr);

}  // namespace mm::records

#endif  // MM_SERVICES_RECORDS_SQL_RECORD_STORE_H_
