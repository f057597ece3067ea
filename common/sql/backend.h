// Private to common/sql: what Database::Open (open.cc, every backend) and
// Database::OpenSqlite (database.cc, SQLite alone) share.
#ifndef MM_COMMON_SQL_BACKEND_H_
#define MM_COMMON_SQL_BACKEND_H_

#include <memory>

#include "absl/status/status.h"
#include "common/sql/database.h"

namespace mm::sql::internal {

// INVALID_ARGUMENT naming the bad field when `options` cannot be used.
absl::Status ValidateOptions(const Options& options);

// `db` counting its failed calls in options.metrics, or `db` itself when
// options.metrics is null.
std::unique_ptr<Database> WithMetrics(std::unique_ptr<Database> db,
                                      const Options& options);

}  // namespace mm::sql::internal

#endif  // MM_COMMON_SQL_BACKEND_H_
