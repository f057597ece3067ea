// Database::Open: the URL names the backend. The only caller of the
// PostgreSQL backend, so a program that opens SQLite alone
// (Database::OpenSqlite; library mm_sql_sqlite) links without libpq.
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sql/backend.h"
#include "common/sql/database.h"
#include "common/sql/postgres_database.h"
#include "common/status.h"
#include "common/strings.h"

namespace mm::sql {

absl::StatusOr<std::unique_ptr<Database>> Database::Open(
    std::string_view std_url, const Options& options) {
  // Every SQLite branch goes through OpenSqlite, which checks the options.
  const absl::string_view url = AsAbsl(std_url);
  if (url == "sqlite::memory:") return OpenSqlite(":memory:", options);
  if (absl::StartsWith(url, "postgresql://") ||
      absl::StartsWith(url, "postgres://")) {
    RETURN_IF_ERROR(internal::ValidateOptions(options));
    ASSIGN_OR_RETURN(std::unique_ptr<Database> db,
                     internal::OpenPostgres(std::string(url), options));
    return internal::WithMetrics(std::move(db), options);
  }
  if (absl::StartsWith(url, "sqlite:")) {
    absl::string_view path = url.substr(7);
    // "sqlite:///abs/path" and "sqlite://rel" keep what follows the "//".
    if (absl::StartsWith(path, "//")) path.remove_prefix(2);
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("database url \"", url,
                       "\" names no file; write sqlite:/path/to/file.db"));
    }
    return OpenSqlite(std::string_view(path.data(), path.size()), options);
  }
  if (absl::EndsWith(url, ".db") && !absl::StrContains(url, "://")) {
    return OpenSqlite(std_url, options);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "database url \"", RedactUrl(std_url),
      "\" is not understood; use sqlite:PATH, a PATH ending in .db, "
      "sqlite::memory:, or a postgresql:// connection URI"));
}

}  // namespace mm::sql
