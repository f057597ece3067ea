// Private to common/sql: the PostgreSQL (libpq) backend of
// mm::sql::Database, and the `?` → `$n` placeholder rewriting it uses.
//
// Thread-safety: the returned Database is thread-safe (see database.h);
// RewritePlaceholders is a pure function.
//
//   ASSIGN_OR_RETURN(auto db, internal::OpenPostgres("postgresql:///mm", {}));
//   RewritePlaceholders("SELECT '?', ?").sql == "SELECT '?', $1"
#ifndef MM_COMMON_SQL_POSTGRES_DATABASE_H_
#define MM_COMMON_SQL_POSTGRES_DATABASE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/sql/database.h"

namespace mm::sql::internal {

// Connects to the libpq connection URI `conninfo` (one connection is made
// at once so a wrong URL or a server that is down fails here).
absl::StatusOr<std::unique_ptr<Database>> OpenPostgres(
    const std::string& conninfo, const Options& options);

struct PlaceholderSql {
  std::string sql;  // with `?` replaced by $1..$n
  int placeholder_count = 0;
};

// Replaces each `?` outside string literals ('...', E'...', $tag$...$tag$),
// quoted identifiers and comments by $1, $2, ... in order. Text the scanner
// cannot close (an unterminated literal) is copied unchanged so the server
// reports the syntax error.
PlaceholderSql RewritePlaceholders(std::string_view sql);

}  // namespace mm::sql::internal

#endif  // MM_COMMON_SQL_POSTGRES_DATABASE_H_
