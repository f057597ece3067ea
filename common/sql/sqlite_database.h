// Private to common/sql: the SQLite backend of mm::sql::Database.
//
// Thread-safety: the returned Database is thread-safe (see database.h).
//
//   ASSIGN_OR_RETURN(auto db, internal::OpenSqlite("/var/mm/records.db", {}));
#ifndef MM_COMMON_SQL_SQLITE_DATABASE_H_
#define MM_COMMON_SQL_SQLITE_DATABASE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/sql/database.h"

namespace mm::sql::internal {

// Opens (creating when missing) the SQLite file at `path`, or a private
// in-memory database when `path` is ":memory:". Sets WAL, foreign keys,
// synchronous=NORMAL and the busy timeout on every connection.
absl::StatusOr<std::unique_ptr<Database>> OpenSqlite(const std::string& path,
                                                     const Options& options);

}  // namespace mm::sql::internal

#endif  // MM_COMMON_SQL_SQLITE_DATABASE_H_
